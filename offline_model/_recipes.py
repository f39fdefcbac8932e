'''Small Python tasks the offline model can really solve: solution and test file per task.

The tests run with plain ``python test_<name>.py`` (no pytest needed) and with pytest.
'''

from __future__ import annotations

import logging
import re
from typing import NamedTuple

_log = logging.getLogger(__name__)


class Recipe(NamedTuple):
    """A solved task: ``module``.py holds ``function``; ``tests`` is the test module's body."""

    module: str
    function: str
    summary: str
    code: str
    tests: str


_RUNNER = '''

if __name__ == "__main__":
    import sys

    tests = [f for name, f in sorted(globals().items()) if name.startswith("test_")]
    failed = 0
    for test in tests:
        try:
            test()
        except Exception as exc:  # report every failure, then exit non-zero
            failed += 1
            print(f"FAILED {test.__name__}: {exc!r}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
'''


def _recipe(module: str, function: str, summary: str, code: str, tests: str) -> Recipe:
    header = f"from {module} import {function}\n\n\n"
    return Recipe(module, function, summary, code.lstrip(), header + tests.strip() + "\n" + _RUNNER)


_PALINDROME = _recipe("palindrome", "is_palindrome", "checks whether text is a palindrome", '''
def is_palindrome(text: str) -> bool:
    """True when text reads the same backwards, ignoring case, spaces and punctuation."""
    cleaned = [ch.lower() for ch in text if ch.isalnum()]
    return cleaned == cleaned[::-1]
''', '''
def test_simple_palindromes():
    assert is_palindrome("racecar")
    assert is_palindrome("A man, a plan, a canal: Panama")


def test_not_palindromes():
    assert not is_palindrome("python")


def test_edge_cases():
    assert is_palindrome("")
    assert is_palindrome("x")
''')

_REVERSE = _recipe("reverse_string", "reverse_string", "reverses a string", '''
def reverse_string(text: str) -> str:
    """Return text reversed, character by character."""
    return text[::-1]
''', '''
def test_reverses_words():
    assert reverse_string("hello") == "olleh"
    assert reverse_string("Switchboard") == "draobhctiwS"


def test_edge_cases():
    assert reverse_string("") == ""
    assert reverse_string("a") == "a"


def test_unicode_and_spaces():
    assert reverse_string("ab c") == "c ba"
    assert reverse_string("héllo") == "olléh"
''')

_FIBONACCI = _recipe("fibonacci", "fibonacci", "returns the n-th Fibonacci number", '''
def fibonacci(n: int) -> int:
    """The n-th Fibonacci number (fibonacci(0) == 0, fibonacci(1) == 1).

    Raises:
        ValueError: n is negative.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
''', '''
def test_first_numbers():
    assert [fibonacci(i) for i in range(8)] == [0, 1, 1, 2, 3, 5, 8, 13]


def test_large_value():
    assert fibonacci(50) == 12586269025


def test_negative_is_rejected():
    try:
        fibonacci(-1)
    except ValueError:
        return
    raise AssertionError("fibonacci(-1) should raise ValueError")
''')

_FACTORIAL = _recipe("factorial", "factorial", "computes n!", '''
def factorial(n: int) -> int:
    """n! for n >= 0.

    Raises:
        ValueError: n is negative.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result
''', '''
def test_small_values():
    assert factorial(0) == 1
    assert factorial(1) == 1
    assert factorial(5) == 120


def test_larger_value():
    assert factorial(20) == 2432902008176640000


def test_negative_is_rejected():
    try:
        factorial(-3)
    except ValueError:
        return
    raise AssertionError("factorial(-3) should raise ValueError")
''')

_FIZZBUZZ = _recipe("fizzbuzz", "fizzbuzz", "returns the FizzBuzz sequence up to n", '''
def fizzbuzz(n: int) -> list[str]:
    """FizzBuzz for 1..n: multiples of 3 → "Fizz", of 5 → "Buzz", of both → "FizzBuzz"."""
    out = []
    for i in range(1, n + 1):
        word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
        out.append(word or str(i))
    return out
''', '''
def test_first_fifteen():
    assert fizzbuzz(15) == ["1", "2", "Fizz", "4", "Buzz", "Fizz", "7", "8", "Fizz", "Buzz",
                            "11", "Fizz", "13", "14", "FizzBuzz"]


def test_empty():
    assert fizzbuzz(0) == []
''')

_SUM = _recipe("sum_list", "sum_list", "sums a list of numbers", '''
def sum_list(numbers: list[float]) -> float:
    """The sum of numbers (0 for an empty list)."""
    total = 0
    for number in numbers:
        total += number
    return total
''', '''
def test_integers():
    assert sum_list([1, 2, 3, 4]) == 10


def test_empty_and_negative():
    assert sum_list([]) == 0
    assert sum_list([-1, 1, -5]) == -5


def test_floats():
    assert abs(sum_list([0.1, 0.2]) - 0.3) < 1e-9
''')

_PRIME = _recipe("is_prime", "is_prime", "checks whether a number is prime", '''
def is_prime(n: int) -> bool:
    """True when n is a prime number (n < 2 is not prime)."""
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True
''', '''
def test_primes():
    assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]


def test_edge_cases():
    assert not is_prime(-7)
    assert not is_prime(0)
    assert not is_prime(1)
    assert is_prime(7919)
''')

_VOWELS = _recipe("count_vowels", "count_vowels", "counts the vowels in a string", '''
def count_vowels(text: str) -> int:
    """How many of a, e, i, o, u (either case) text contains."""
    return sum(1 for ch in text.lower() if ch in "aeiou")
''', '''
def test_counts():
    assert count_vowels("hello world") == 3
    assert count_vowels("AEIOU") == 5


def test_no_vowels():
    assert count_vowels("") == 0
    assert count_vowels("rhythm") == 0
''')

# Order matters: the first match wins ("palindrome" tasks often mention "reverse").
_MATCHERS: tuple[tuple[re.Pattern[str], Recipe], ...] = (
    (re.compile(r"palindrom"), _PALINDROME),
    (re.compile(r"fizz\s*buzz"), _FIZZBUZZ),
    (re.compile(r"fibonacci"), _FIBONACCI),
    (re.compile(r"factorial"), _FACTORIAL),
    (re.compile(r"\bprime"), _PRIME),
    (re.compile(r"vowel"), _VOWELS),
    (re.compile(r"revers\w*\b.*\b(string|str|text|word)|\b(string|text|word)s?\b.*revers"),
     _REVERSE),
    (re.compile(r"\bsum\b.*\b(list|numbers|array)|\b(list|array)\b.*\bsum\b"), _SUM),
)


def find_recipe(task: str) -> Recipe | None:
    """The recipe for ``task`` (matched on keywords, case-insensitive), or None."""
    lowered = task.lower()
    for pattern, recipe in _MATCHERS:
        if pattern.search(lowered):
            return recipe
    return None
