"""Inventory records with dataclasses, the way many people write them."""

from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0
    tags: list = field(default_factory=list)

    def value(self) -> float:
        return self.price * self.quantity


def restock(items, threshold, amount):
    stock = [Item(n, p, q) for n, p, q in items]
    for item in stock:
        if item.quantity < threshold:
            item.quantity += amount
            item.tags.append("restocked")
    return [(i.name, i.quantity, i.tags) for i in stock], sum(i.value() for i in stock)


CASES = [
    ("restock", [[["bolt", 0.25, 10], ["nut", 0.1, 200], ["gear", 3.5, 2]], 20, 50]),
]
