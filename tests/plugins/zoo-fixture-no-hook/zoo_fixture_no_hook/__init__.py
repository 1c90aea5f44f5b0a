"""Defines the function a plugin needs but forgets to mark it with @zoo.hookimpl."""

import zoo


def zoo_register_models():
    return [zoo.ModelSpec(name="unmarked_mlp", builder="zoo_fixture_no_hook:nothing", task="classification")]
