"""Command lines of the ``python -m nerflite....`` tools: argparse with nerflite's error rule.

A bad command line (an unknown option, a missing argument, a value of the wrong type) ends in ONE
line ``error: ...`` naming the argument, with exit status 1, like every other error a user can
cause; argparse's own report is a usage block and a second line, with status 2.
"""

from __future__ import annotations

import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``error: argument --frames: invalid
    int value: 'abc' (python -m nerflite.data.process --help lists the options)``."""

    def error(self, message: str):
        self.exit(1, f"error: {message} ({self.prog} --help lists the options)\n")

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            sys.stderr.write(message)
        sys.exit(status)
