"""The market's pure core: money, the ledger's rules, matching, the pooling window and the market's
rules. Nothing here does I/O or reads a clock of its own; callers pass time in. ``sim``, the
dispatcher, the store and the property tests all run this very code (docs/architecture.md)."""
