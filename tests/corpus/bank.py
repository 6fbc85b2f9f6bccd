"""Accounts with methods, a custom exception and try/except/finally."""


class InsufficientFunds(Exception):
    pass


class Account:
    fee = 1

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance
        self.history = []

    def deposit(self, amount):
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount
        self.history.append(("in", amount))

    def withdraw(self, amount):
        if amount + self.fee > self.balance:
            raise InsufficientFunds("%s cannot pay %d" % (self.owner, amount))
        self.balance -= amount + self.fee
        self.history.append(("out", amount))


def apply(account, op, amount):
    if op == "in":
        account.deposit(amount)
    else:
        account.withdraw(amount)


def simulate(ops):
    acct = Account("ann", 10)
    errors = []
    attempts = 0
    for op, amount in ops:
        try:
            apply(acct, op, amount)
        except InsufficientFunds as exc:
            errors.append(str(exc))
        except ValueError:
            errors.append("bad amount")
        finally:
            attempts += 1
    return acct.balance, acct.history, errors, attempts


CASES = [
    ("simulate", [[["in", 5], ["out", 30], ["out", 7], ["in", -2], ["in", 40], ["out", 20]]]),
]
