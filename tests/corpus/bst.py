"""A binary search tree: job functions recursing over node objects."""


class TreeNode:
    def __init__(self, key):
        self.key = key
        self.left = None
        self.right = None


def insert(root, key):
    if root is None:
        return TreeNode(key)
    if key < root.key:
        root.left = insert(root.left, key)
    elif key > root.key:
        root.right = insert(root.right, key)
    return root


def inorder(root, out):
    if root is not None:
        inorder(root.left, out)
        out.append(root.key)
        inorder(root.right, out)
    return out


def height(root):
    if root is None:
        return 0
    lh = height(root.left)
    rh = height(root.right)
    return 1 + max(lh, rh)


def build_and_walk(keys):
    """
    >>> build_and_walk([2, 1, 3])
    ([1, 2, 3], 2)
    """
    root = None
    for k in keys:
        root = insert(root, k)
    return inorder(root, []), height(root)


CASES = [
    ("build_and_walk", [[50, 30, 70, 20, 40, 60, 80, 35, 45, 65, 30]]),
]
