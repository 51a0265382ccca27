"""The whole platform on one machine: `covertype up`, `down`, `status`, `restart`.

`services` is the table of services and the environment they start in; `tree` the guard
that runs one service's process tree; `supervisor` the supervisord that restarts them;
`state` what the stack writes down; `news` what the services say; `watch` what `up` prints
while it runs; `commands` the commands themselves. Nothing is imported here: every guard
process imports this package, and must stay light.
"""
