"""``make demo``: the main job on embedded SQLite, from nothing.

Creates a fresh market in ``./demo``: an account with credits and a registered client, checks the
ledger, and shows the result. It grows as the dispatcher and worker land.
"""

from __future__ import annotations

import os
import shutil
import sys

from market import accounts, money
from market.store import accounts as sql
from market.store import clients as csql
from market.store import open_database

DEMO_DIR = "demo"


def main() -> int:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    os.makedirs(DEMO_DIR)
    url = f"sqlite:{DEMO_DIR}/market.sqlite"
    db = open_database(url)
    alice = accounts.create_account(db, "alice", "alice@example.org", "demo-password", confirm=False)
    bob = accounts.create_account(db, "bob", "bob@example.org", "demo-password", confirm=False)
    client = accounts.register_client(db, bob.id, "bobs-laptop")
    print(f"market at {url}: accounts alice (id {alice.id}) and bob (id {bob.id}); bob's client {client.id}")
    for row in db.transact(sql.list_accounts):
        print(f"  {row['name']:<8} balance {money.format_cents(row['balance'])}")
    print(f"  clients: {[c['name'] for c in db.transact(csql.list_clients)]}")
    audit = db.transact(sql.audit)
    print(f"ledger balanced: {audit['balanced']} (granted {money.format_cents(audit['granted'])})")
    return 0 if audit["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main())
