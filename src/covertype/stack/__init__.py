"""The whole platform on one machine: `covertype up`, `down`, `status`, `restart`.

`services` is the table of services and the environment they start in; `guard` runs one
service's process tree; `supervisor` the supervisord that restarts them; `state` what the
stack writes down; `logins` its secrets; `probes` what the services answer; `progress` what
they have done since `up`; `watch` what `up` prints while it runs; `prometheus` the local
Prometheus; `commands` the commands themselves. Nothing is imported here: every guard
process imports this package, and must stay light.
"""
