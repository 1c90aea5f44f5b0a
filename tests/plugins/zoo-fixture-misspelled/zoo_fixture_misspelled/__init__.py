"""Marks zoo_register_model (no s) as a hook: a hook the contract does not know."""

import zoo


@zoo.hookimpl
def zoo_register_model():
    return [zoo.ModelSpec(name="misspelled_mlp", builder="zoo_fixture_misspelled:nothing", task="classification")]
