"""Imports fine, then calls sys.exit(3) inside its hook."""

import sys

import zoo


@zoo.hookimpl
def zoo_register_models():
    sys.exit(3)
