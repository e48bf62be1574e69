"""The skill bank: catalog, skill_info contract, routing, automl_policy."""
