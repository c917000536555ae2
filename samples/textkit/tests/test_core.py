import unittest

from textkit.core import normalize_whitespace, slugify


class CoreTests(unittest.TestCase):
    def test_normalize_whitespace(self):
        self.assertEqual(normalize_whitespace("  a \n b\t c  "), "a b c")

    def test_slugify(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")


if __name__ == "__main__":
    unittest.main()
