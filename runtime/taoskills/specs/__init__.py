"""Specs: the spec builder (:mod:`taoskills.specs.builder`), the schema validator
(:mod:`taoskills.specs.validator`) and TAO's semantic constraints
(:mod:`taoskills.specs.constraints`).

Nothing is imported here so that importing one module does not pull in the others.
"""
