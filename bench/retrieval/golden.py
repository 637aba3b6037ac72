"""The retrieval quality corpus and golden set: Python standard library docstrings.

Corpus: for each module in :data:`MODULES`, one Markdown document made of the
module's docstring and, under a ``## name`` heading each, the docstrings of its
public functions and classes (those defined in the module or its C
accelerator). Nobody on this project wrote them, they ship with every Python,
and they are long technical text with identifiers, error names and numbers.
They depend on the Python version: the golden file records it and the builder
refuses a corpus in which an evidence passage is missing.

Golden set (:data:`QUESTIONS`): written by hand for this benchmark. Each
question names the module whose document answers it and an exact evidence
passage (whitespace-normalised substring of that document). ``paraphrase``
questions avoid the passage's distinctive words (the way a user who does not
know the API asks); ``exact`` questions use an identifier, error name or
number the passage contains (where keyword search is expected to shine).

Run: ``.venv/bin/python -m bench.retrieval.golden`` writes
``bench/retrieval/golden_stdlib.json`` (the committed golden set, with the
Python version and a digest of each document).
"""

# The hand-written question table below reads better one question per entry than wrapped.
# ruff: noqa: E501

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).with_name("golden_stdlib.json")

MODULES = [
    "abc",
    "argparse",
    "array",
    "ast",
    "base64",
    "bisect",
    "bz2",
    "calendar",
    "cmd",
    "codecs",
    "collections",
    "colorsys",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "doctest",
    "enum",
    "filecmp",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "math",
    "mimetypes",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "pprint",
    "profile",
    "pstats",
    "queue",
    "quopri",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
    "zlib",
]

# (module, kind, question, evidence)
QUESTIONS: list[tuple[str, str, str, str]] = [
    ("shutil", "paraphrase", "How can I remove a folder along with everything nested inside it?",
     "Recursively delete a directory tree."),
    ("shutil", "paraphrase", "How much free space is left on the drive that holds a given location?",
     "Return disk usage statistics about the given path."),
    ("shutil", "paraphrase",
     "What call bundles up a whole folder into a single package file for distribution?",
     "Create an archive file (eg. zip or tar)."),
    ("shutil", "paraphrase", "How do I find out where an installed program such as git lives?",
     "return the path which conforms to the given mode on the PATH"),
    ("os", "paraphrase",
     "How do I create a nested folder structure in one call, including missing parents?",
     "create a leaf directory and all intermediate ones."),
    ("os", "paraphrase", "Which function lets me visit every subfolder and file below a starting folder?",
     "Directory tree generator."),
    ("os", "paraphrase", "How do I atomically swap a new file in over an existing one?",
     "Rename a file or directory, overwriting the destination."),
    ("os", "paraphrase", "How many processor cores does this machine have?",
     "Return the number of CPUs in the system; return None if indeterminable."),
    ("os", "paraphrase", "Where do I get unpredictable bytes from the operating system for key material?",
     "Return a bytes object containing random bytes suitable for cryptographic use."),
    ("tempfile", "paraphrase", "I need a scratch folder that cleans itself up when my with-block ends.",
     "Upon exiting the context, the directory and everything contained in it are removed."),
    ("tempfile", "paraphrase",
     "Which function hands back both an open descriptor and the name of a fresh private scratch file?",
     "The return value is a pair (fd, name)"),
    ("textwrap", "paraphrase",
     "How do I strip the shared indentation from a multi-line string literal written indented in my code?",
     "Remove any common leading whitespace from every line in `text`."),
    ("textwrap", "paraphrase",
     "How do I cut a long sentence down so it fits a fixed number of characters, with a marker at the end?",
     "Collapse and truncate the given text to fit in the given width."),
    ("difflib", "paraphrase",
     "How can I suggest the nearest spelling from a list of known words when a user makes a typo?",
     'Use SequenceMatcher to return list of the best "good enough" matches.'),
    ("difflib", "paraphrase", "How do I produce a patch-style comparison of two versions of a text file?",
     "Compare two sequences of lines; generate the delta as a unified diff."),
    ("functools", "paraphrase",
     "How do I memoize a function so repeated calls with the same arguments are not recomputed, with a bounded size?",
     "Least-recently-used cache decorator."),
    ("functools", "paraphrase",
     "If I define only __eq__ and __lt__, what can generate the remaining comparison operators?",
     "Class decorator that fills in missing ordering methods"),
    ("functools", "paraphrase",
     "How do I write a function whose implementation is chosen by the type of its first argument?",
     "Single-dispatch generic function decorator."),
    ("functools", "paraphrase",
     "How do I fold a list into one value by combining elements pairwise from left to right?",
     "Apply a function of two arguments cumulatively to the items of a sequence"),
    ("itertools", "paraphrase", "How do I bucket adjacent items of a sequence that share the same category?",
     "make an iterator that returns consecutive keys and groups from the iterable"),
    ("itertools", "paraphrase", "How do I compute running totals over a list?",
     "Return series of accumulated sums (or other binary function results)."),
    ("itertools", "paraphrase",
     "How do I pair up items from two lists of unequal length, padding the shorter one?",
     "method continues until the longest iterable in the argument sequence is exhausted"),
    ("itertools", "paraphrase", "How do I list every possible ordering of a few elements?",
     "Return successive r-length permutations of elements in the iterable."),
    ("collections", "paraphrase",
     "How do I make a lightweight immutable record type whose attributes can be read by name?",
     "Returns a new subclass of tuple with named fields."),
    ("collections", "paraphrase", "What is the easiest way to tally how often each word occurs?",
     "Dict subclass for counting hashable items."),
    ("collections", "paraphrase",
     "Which container is efficient for adding and popping at both the front and the back?",
     "A list-like sequence optimized for data accesses near its endpoints."),
    ("collections", "paraphrase",
     "How can I look up a key across several layered dictionaries, like defaults overridden by user settings?",
     "A ChainMap groups multiple dicts (or other mappings) together to create a single, updateable view."),
    ("json", "exact", "How do I turn a Python dict into a JSON formatted str?",
     "Serialize ``obj`` to a JSON formatted ``str``."),
    ("json", "paraphrase",
     "How can I customise what Python value each decoded object literal becomes while parsing?",
     "``object_hook`` is an optional function that will be called with the result of any object literal decode"),
    ("copy", "paraphrase",
     "How do I clone a nested structure so that changing inner lists does not affect the original?",
     "Deep copy operation on arbitrary Python objects."),
    ("random", "paraphrase",
     "How do I pick several different entries at random from a list, never the same one twice?",
     "Chooses k unique random elements from a population sequence."),
    ("random", "paraphrase",
     "How do I draw items at random where the same item may come up more than once, optionally weighted?",
     "Return a k sized list of population elements chosen with replacement."),
    ("secrets", "paraphrase",
     "How do I generate a hard-to-guess token that I can put into a password reset link?",
     "Return a random URL-safe text string, in Base64 encoding."),
    ("hashlib", "paraphrase",
     "Which function should I use to stretch a user's password into a key with many iterations?",
     "Password based key derivation function 2 (PKCS #5 v2.0) with HMAC as pseudorandom function."),
    ("statistics", "paraphrase",
     "What gives the value that splits a sorted data set into two equal halves?",
     "Return the median (middle value) of numeric data."),
    ("statistics", "paraphrase", "How do I measure how strongly two variables move together?",
     "Pearson's correlation coefficient"),
    ("statistics", "paraphrase", "How do I fit a straight line through x and y data points?",
     "Slope and intercept for simple linear regression."),
    ("statistics", "paraphrase", "How do I compute how spread out a sample of measurements is?",
     "Return the square root of the sample variance."),
    ("uuid", "paraphrase",
     "How do I get a deterministic identifier derived from a name, so the same name always gives the same ID?",
     "Generate a UUID from the SHA-1 hash of a namespace UUID and a name."),
    ("uuid", "exact", "How do I make a random UUID?", "Generate a random UUID."),
    ("ipaddress", "paraphrase", "How do I parse a CIDR block like 10.0.0.0/8 into an object?",
     "the IP network.  Either IPv4 or IPv6 networks may be supplied"),
    ("fnmatch", "paraphrase", "How do I check whether a file name matches a wildcard like *.txt?",
     "Patterns are Unix shell style"),
    ("glob", "paraphrase", "How do I list all files in a folder whose names end with .csv?",
     "Return a list of paths matching a pathname pattern."),
    ("subprocess", "paraphrase",
     "What is the recommended way to launch an external program and wait for it to finish?",
     "Run command with arguments and return a CompletedProcess instance."),
    ("subprocess", "exact", "Which helper raises CalledProcessError when the command fails?",
     "If the exit code was non-zero it raises a CalledProcessError."),
    ("threading", "paraphrase",
     "How can one thread signal other waiting threads that something has happened?",
     "Events manage a flag that can be set to true with the set() method"),
    ("threading", "paraphrase", "How do I run a callback once after a delay in a background thread?",
     "Call a function after a specified number of seconds"),
    ("threading", "paraphrase", "How do I limit how many threads can use a resource at the same time?",
     "Semaphores manage a counter representing the number of release() calls minus the number of acquire() calls"),
    ("queue", "paraphrase", "Which thread-safe queue hands out the most urgent item first?",
     "Variant of Queue that retrieves open entries in priority order (lowest first)."),
    ("traceback", "paraphrase",
     "How do I get the text of an error's call stack as strings instead of printing it?",
     "Format a stack trace and the exception information."),
    ("weakref", "paraphrase",
     "How do I register cleanup code that runs when an object is reclaimed by the runtime?",
     "returns a callable finalizer object which will be called when obj is garbage collected."),
    ("contextlib", "exact", "How do I ignore FileNotFoundError in a with block without try/except?",
     "Context manager to suppress specified exceptions"),
    ("contextlib", "paraphrase",
     "How do I open a variable number of files in one with-statement and have all of them closed?",
     "Context manager for dynamic management of a stack of exit callbacks."),
    ("dataclasses", "paraphrase", "How do I give a dataclass attribute a mutable default such as an empty list?",
     "default_factory is a 0-argument function called to initialize a field's value."),
    ("typing", "paraphrase",
     "How can I make a distinct type for user ids that is still an int at runtime?",
     "NewType creates simple unique types with almost zero runtime overhead."),
    ("typing", "paraphrase",
     "How do I describe an interface that classes satisfy just by having the right methods, without inheriting from it?",
     "structural subtyping (static duck-typing)."),
    ("inspect", "paraphrase", "How can I get the code of a function as a string at run time?",
     "Return the text of the source code for an object."),
    ("ast", "paraphrase",
     "How do I safely turn a string like \"[1, 2, {'a': 3}]\" into Python data without eval?",
     "Evaluate an expression node or a string containing only a Python expression."),
    ("struct", "paraphrase", "How do I convert integers and floats into a binary record with a fixed layout?",
     "Return a bytes object containing the values v1, v2, ... packed according to the format string."),
    ("base64", "paraphrase",
     "How do I encode bytes into text that is safe to put in web addresses and file names?",
     "The alphabet uses '-' instead of '+' and '_' instead of '/'."),
    ("zlib", "exact", "How do I compress a bytes buffer with a compression level between 0 and 9?",
     "Returns a bytes object containing compressed data."),
    ("gzip", "exact", "How do I read a gzip-compressed file in text mode?",
     "Open a gzip-compressed file in binary or text mode."),
    ("tarfile", "exact", "Which mode string opens a tar archive for reading with gzip compression?",
     "'r:gz'       open for reading with gzip compression"),
    ("csv", "paraphrase",
     "How can my program work out by itself whether a spreadsheet export separates fields with commas or semicolons?",
     '"Sniffs" the format of a CSV file (i.e. delimiter, quotechar)'),
    ("shlex", "paraphrase",
     "How do I break a command line into arguments the way a Unix shell would, respecting quotes?",
     "Split the string *s* using shell-like syntax."),
    ("shlex", "paraphrase", "How do I make a file name safe to paste into a command for the shell?",
     "Return a shell-escaped version of the string *s*."),
    ("logging", "paraphrase",
     "Why does my one-line setup of log output do nothing when handlers were already added?",
     "This function does nothing if the root logger already has handlers configured"),
    ("logging", "paraphrase", "How can I add a request id to every log message without passing it each time?",
     "An adapter for loggers which makes it easier to specify contextual information in logging output."),
    ("calendar", "paraphrase", "How do I check whether February has 29 days in a given year?",
     "Return True for leap years, False for non-leap years."),
    ("fractions", "paraphrase", "How do I do exact arithmetic with ratios like 1/3 without floating point error?",
     "This class implements rational numbers."),
    ("math", "paraphrase", "How do I compare two floats for approximate equality with a tolerance?",
     "Determine whether two floating point numbers are close in value."),
    ("math", "exact", "Which function gives the binomial coefficient, n choose k?",
     "Number of ways to choose k items from n items without repetition and without order."),
    ("operator", "paraphrase", "What can I pass as a sort key to order tuples by their third element?",
     "Return a callable object that fetches the given item(s) from its operand."),
    ("pickle", "exact", "What is the default pickle protocol?", "protocol is 4."),
    ("sqlite3", "exact", "How do I open a throwaway database that lives only in memory with :memory:?",
     'You can use ":memory:" to open a database connection'),
    ("socket", "paraphrase",
     "What is the convenient way to open a TCP client connection to a host and port with a timeout?",
     "Connect to *address* and return the socket object."),
    ("ssl", "paraphrase",
     "How do I get secure settings for an HTTPS client without choosing ciphers myself?",
     "Create a SSLContext object with default settings."),
    ("mimetypes", "exact", "How do I pick the Content-type header for a file from its name?",
     "Guess the type of a file based on its URL."),
    ("string", "paraphrase", "What lets me fill placeholders like $name in a text with values from a dict?",
     "A string class for supporting $-substitutions."),
    ("signal", "exact", "How do I have SIGALRM delivered after some seconds?",
     "Arrange for SIGALRM to arrive after the given number of seconds."),
    ("datetime", "paraphrase", "How do I represent a duration such as 3 days and 4 hours to add to a date?",
     "Difference between two datetime values."),
    ("heapq", "paraphrase", "How do I get the top 10 highest scores from a big list without fully sorting it?",
     "Find the n largest elements in a dataset."),
    ("heapq", "paraphrase", "How do I combine several already-ordered streams into one ordered stream lazily?",
     "Merge multiple sorted inputs into a single sorted output."),
    ("bisect", "paraphrase", "How do I add an element to an ordered list so that it stays ordered?",
     "Insert item x in list a, and keep it sorted assuming a is sorted."),
    ("warnings", "paraphrase", "How do I tell users that a function is deprecated without raising an error?",
     "Issue a warning, or maybe ignore it or raise an exception."),
    ("zipfile", "exact", "How do I list the contents of a zip file?",
     "Class with methods to open, read, write, close, list zip files."),
    ("argparse", "paraphrase",
     "What should I use to define flags and positional arguments for a command-line tool with automatic help?",
     "Object for parsing command line strings into Python objects."),
    ("pprint", "paraphrase", "How do I get a nicely indented string of a deeply nested dictionary?",
     "Format a Python object into a pretty-printed representation."),
    ("platform", "paraphrase", "How do I tell whether the computer is x86_64 or arm64?",
     "Returns the machine type, e.g. 'i386'"),
    ("types", "paraphrase",
     "What is a quick object I can hang arbitrary attributes on, built from keyword arguments?",
     "A simple attribute-based namespace."),
    ("io", "paraphrase",
     "How do I treat a string as a file object so that code which writes to files can write into it?",
     "Text I/O implementation using an in-memory buffer."),
    ("array", "paraphrase",
     "How do I store a long list of machine integers compactly, all of one fixed element type?",
     "Return a new array whose items are restricted by typecode"),
    ("linecache", "paraphrase", "How do I fetch the n-th line of a source file, with caching?",
     "Get a line for a Python source file from the cache."),
    ("enum", "paraphrase", "How can enumeration members get their values assigned automatically?",
     "Instances are replaced with an appropriate value in Enum class suites."),
]  # fmt: skip


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _public(module: Any, name: str) -> Any:
    if name.startswith("_"):
        return None
    obj = getattr(module, name, None)
    if not (inspect.isroutine(obj) or inspect.isclass(obj)):
        return None
    home = getattr(obj, "__module__", None) or ""
    listed = name in getattr(module, "__all__", ())
    native = home in (module.__name__, "_" + module.__name__) or (
        module.__name__ == "os" and home == "posix"
    )
    return obj if (listed or native) and inspect.getdoc(obj) else None


def document(module_name: str) -> str:
    """A module's docstrings as one Markdown document."""
    module = importlib.import_module(module_name)
    parts = [f"# {module_name}", inspect.getdoc(module) or ""]
    for name in sorted(vars(module)):
        obj = _public(module, name)
        if obj is not None:
            parts += [f"## {module_name}.{name}", inspect.getdoc(obj) or ""]
    return "\n\n".join(p for p in parts if p)


def corpus() -> dict[str, str]:
    return {name: document(name) for name in MODULES}


def build() -> dict[str, Any]:
    docs = corpus()
    questions = []
    for i, (module, kind, question, evidence) in enumerate(QUESTIONS):
        if normalise(evidence) not in normalise(docs[module]):
            raise SystemExit(f"question {i}: evidence not in {module}'s document: {evidence!r}")
        elsewhere = [
            m for m, text in docs.items() if m != module and normalise(evidence) in normalise(text)
        ]
        if elsewhere:
            raise SystemExit(f"question {i}: evidence also in {elsewhere}: {evidence!r}")
        questions.append(
            {
                "id": f"q{i:03d}",
                "doc": module,
                "kind": kind,
                "question": question,
                "evidence": evidence,
            }
        )
    return {
        "corpus": "Python standard library docstrings (bench/retrieval/golden.py: document())",
        "python": sys.version.split()[0],
        "documents": {m: hashlib.sha256(t.encode()).hexdigest()[:16] for m, t in docs.items()},
        "questions": questions,
    }


def load() -> dict[str, Any]:
    golden: dict[str, Any] = json.loads(GOLDEN.read_text())
    return golden


if __name__ == "__main__":
    built = build()
    GOLDEN.write_text(json.dumps(built, indent=1, ensure_ascii=False) + "\n")
    kinds = [q["kind"] for q in built["questions"]]
    print(
        f"{len(kinds)} questions ({kinds.count('paraphrase')} paraphrase, {kinds.count('exact')} exact) "
        f"over {len(built['documents'])} documents, "
        f"{sum(len(d) for d in corpus().values()) / 1e3:.0f}k chars -> {GOLDEN}"
    )
