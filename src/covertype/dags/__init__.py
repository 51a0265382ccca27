"""The platform's workflows; the scheduler reads this folder (see covertype.orchestrate)."""
