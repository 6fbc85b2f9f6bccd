"""Caesar and Vigenere ciphers."""

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def caesar(text, shift):
    """
    >>> caesar("abc xyz", 3)
    'def abc'
    """
    out = []
    for ch in text:
        if ch.lower() in ALPHABET:
            idx = (ALPHABET.index(ch.lower()) + shift) % 26
            new = ALPHABET[idx]
            out.append(new.upper() if ch.isupper() else new)
        else:
            out.append(ch)
    return "".join(out)


def vigenere(text, key, decrypt=False):
    out = ""
    k = 0
    for ch in text:
        if ch.isalpha():
            shift = ALPHABET.index(key[k % len(key)])
            if decrypt:
                shift = -shift
            out += caesar(ch, shift)
            k += 1
        else:
            out += ch
    return out


def round_trip(text, key):
    secret = vigenere(text, key)
    return secret, vigenere(secret, key, decrypt=True)


def brute_force(secret, crib):
    hits = []
    for shift in range(26):
        plain = caesar(secret, -shift)
        if crib in plain:
            hits.append((shift, plain))
    return hits


CASES = [
    ("round_trip", ["Attack at dawn!", "lemon"]),
    ("brute_force", ["Wkh ira", "the"]),
]
