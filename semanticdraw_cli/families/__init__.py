"""Model families: one module each behind the `FamilyAdapter` contract, collected in `registry`."""
