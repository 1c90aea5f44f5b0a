"""Imports fine, then raises inside its hook."""

import zoo


@zoo.hookimpl
def zoo_register_models():
    raise ValueError("fixture plugin broken in its hook")
