pytest_plugins = ["ember_shared.testing.plugin"]
