"""Dataset registry: one YAML spec per dataset, the evaluation split lists, and the schema that validates them."""
