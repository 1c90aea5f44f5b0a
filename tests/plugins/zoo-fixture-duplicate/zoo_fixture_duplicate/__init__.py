"""Also registers `digits_cnn`, which the zoo-digits plugin registers first: both load, and `digits_cnn` stays
zoo-digits' (this one is `fixture-duplicate/digits_cnn`)."""

import zoo


@zoo.hookimpl
def zoo_register_models():
    return [
        zoo.ModelSpec(name="other_net", builder="zoo_fixture_duplicate:build", task="classification"),
        zoo.ModelSpec(name="digits_cnn", builder="zoo_fixture_duplicate:build", task="classification"),
    ]
