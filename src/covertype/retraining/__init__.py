"""When to retrain: `policy` is the rule (pure: facts in, a decision with its reason out);
`decisions` gathers the facts from the registry and the data DB, and records every decision
in `retrain_decisions`. The training DAG's `decide` task calls `decisions.decide`."""
