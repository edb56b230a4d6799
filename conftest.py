pytest_plugins = ["ember_devkit.testing.plugin"]
