"""A singly linked list with node objects, reversal and cycle checks."""


class Node:
    def __init__(self, value, next=None):
        self.value = value
        self.next = next


class LinkedList:
    def __init__(self):
        self.head = None
        self.size = 0

    def push(self, value):
        self.head = Node(value, self.head)
        self.size += 1

    def to_list(self):
        out = []
        node = self.head
        while node is not None:
            out.append(node.value)
            node = node.next
        return out


def build(values):
    ll = LinkedList()
    for v in reversed(values):
        ll.push(v)
    return ll


def reverse(values):
    ll = build(values)
    prev = None
    node = ll.head
    while node is not None:
        node.next, prev, node = prev, node, node.next
    ll.head = prev
    return ll.to_list()


def middle_and_cycle(values, loop_to):
    ll = build(values)
    nodes = []
    node = ll.head
    while node is not None:
        nodes.append(node)
        node = node.next
    slow = fast = ll.head
    while fast is not None and fast.next is not None:
        slow = slow.next
        fast = fast.next.next
    mid = slow.value
    if loop_to is not None:
        nodes[-1].next = nodes[loop_to]
    slow = fast = ll.head
    while fast is not None and fast.next is not None:
        slow = slow.next
        fast = fast.next.next
        if slow is fast:
            return mid, True
    return mid, False


CASES = [
    ("reverse", [[1, 2, 3, 4, 5, 6]]),
    ("middle_and_cycle", [[1, 2, 3, 4, 5, 6, 7], 2]),
    ("middle_and_cycle", [[1, 2, 3], None]),
]
