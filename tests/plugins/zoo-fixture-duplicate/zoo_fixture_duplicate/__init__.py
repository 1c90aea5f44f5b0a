"""Claims the name `digits_cnn`, which the zoo-digits plugin already registers."""

import zoo


@zoo.hookimpl
def zoo_register_models():
    return [
        zoo.ModelSpec(name="other_net", builder="zoo_fixture_duplicate:build", task="classification"),
        zoo.ModelSpec(name="digits_cnn", builder="zoo_fixture_duplicate:build", task="classification"),
    ]
