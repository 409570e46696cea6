"""Command-line plumbing of the benchmark scripts: a short `--help`, one-line errors.

absl's own `--help` lists only the flags of the main module (not those it
imports, such as `comparison.flags`), exits with status 1, and a bad value
prints a stack of help around the one useful line. `run` replaces absl's
flag parsing for a script:

* `--help` / `-h` / `--helpshort` print the script's description and the
  flags of the script and of the modules it names (flags whose help starts
  with "Internal:" are hidden), then exit 0 (`--helpfull` is absl's, with
  every library flag);
* a malformed or rejected value prints one line on standard error,
  `<script>: error: <what was wrong>`, and exits 2 before `main` runs, so
  nothing is created.

This module imports absl only (no TensorFlow), so the help and the checks
are fast.

Example (a script):

```python
from absl import flags
from keras_medyate import cli

flags.DEFINE_integer("epochs", 8, "Epochs per run.")

def check(values):
    cli.require(values.epochs >= 1, f"--epochs must be >= 1, got {values.epochs}.")

def main(argv):
    ...

if __name__ == "__main__":
    cli.run(main, __doc__, check=check)
```
"""

import re
import sys
import textwrap

from absl import app, flags

#: Exit status of a command-line usage error (as argparse).
USAGE_ERROR = 2
HELP_ARGS = ("--help", "-h", "--helpshort", "-help", "-?")


class UsageError(ValueError):
    """A flag value the script rejects (printed as one line, exit status 2)."""


def require(condition, message):
    """Raises `UsageError(message)` unless `condition`."""
    if not condition:
        raise UsageError(message)


def program():
    """How the running script is invoked (for messages)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        name = spec.name.removesuffix(".__main__")  # `python -m package` runs package.__main__
        return f"python -m {name}"
    return sys.argv[0] if sys.argv and sys.argv[0] else "program"


def fail(message):
    """Prints `<program>: error: <message>` on standard error and exits with status 2."""
    text = " ".join(str(message).split())
    sys.stderr.write(f"{program()}: error: {text}\n")
    sys.stderr.flush()
    sys.exit(USAGE_ERROR)


def run(main, doc, modules=(), check=None):
    """`absl.app.run(main)` with a short `--help` and one-line usage errors.

    Args:
        main: the script's `main(argv)`.
        doc: the script's description (its `__doc__`), shown by `--help`.
        modules: names of other modules whose flags `--help` lists (e.g.
            `"keras_medyate.comparison.flags"`).
        check: optional `check(FLAGS)`, run after parsing; it raises
            `UsageError` (or `ValueError`) for a value to reject.
    """
    app.run(main, flags_parser=lambda argv: parse(argv, doc, modules, check))


def parse(argv, doc, modules=(), check=None):
    """Parses `argv` into `flags.FLAGS`; prints the help or one error line and exits."""
    if any(arg in HELP_ARGS for arg in argv[1:]):
        sys.stdout.write(help_text(doc, modules))
        sys.stdout.flush()
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as error:
        fail(f"{error} (see --help)")
    if len(rest) > 1:
        fail(f"unexpected argument(s) {rest[1:]}: every setting is a --flag=value (see --help).")
    if check is not None:
        try:
            check(flags.FLAGS)
        except ValueError as error:
            fail(error)
    return rest


def help_text(doc, modules=()):
    """The script's description and its own flags (plus those of `modules`)."""
    lines = [f"usage: {program()} [--flag=value ...]", ""]
    lines += [textwrap.dedent(doc or "").strip(), "", "flags:"]
    for flag in own_flags(modules):
        default = flag.default
        if flag.boolean:
            name = f"--[no]{flag.name}"
            default = "true" if flag.default else "false"
        else:
            name = f"--{flag.name}"
            if isinstance(default, (list, tuple)):
                default = ",".join(str(v) for v in default)
        lines.append(f"  {name}" + (f" (default: {default})" if default not in (None, "") else ""))
        for line in textwrap.wrap(flag.help or "", width=76):
            lines.append(f"      {line}")
    lines += ["", "--helpfull lists every flag of the libraries too."]
    return "\n".join(lines) + "\n"


def own_flags(modules=()):
    """The flags of the main script and of `modules`, sorted by name, internals left out."""
    by_module = flags.FLAGS.flags_by_module_dict()
    main = sys.modules.get("__main__")
    names = {sys.argv[0] if sys.argv else None, getattr(main, "__file__", None), *modules}
    found = {}
    for module, module_flags in by_module.items():
        if module in names:
            for flag in module_flags:
                # An enum's help starts with its choices: "<a|b>: ...".
                text = re.sub(r"^<[^>]*>: ", "", flag.help or "")
                if not text.startswith("Internal:"):
                    found[flag.name] = flag
    return [found[name] for name in sorted(found)]
