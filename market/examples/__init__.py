"""Sample jobs shipped with the market (used by ``make demo`` and the tests)."""
