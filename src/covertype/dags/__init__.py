"""The platform's workflows, one file each; the scheduler reads this folder (see
covertype.orchestrate). Never name the scheduler or its graphs here: a file holding both
words is parsed as a workflow file."""
