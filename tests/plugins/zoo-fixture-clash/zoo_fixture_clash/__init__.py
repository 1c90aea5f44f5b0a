"""Uses the entry-point name of the bundled torchvision plugin; it must not replace it."""

import zoo


@zoo.hookimpl
def zoo_register_models():
    return [zoo.ModelSpec(name="clash_mlp", builder="zoo_fixture_clash:nothing", task="classification")]
