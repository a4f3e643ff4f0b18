"""Push: rule evaluation, per-user notification actions, unread counts and push gateways.

``conditions`` compiles push rule conditions (glob patterns cached per
pattern), ``evaluator`` runs a user's compiled ruleset over an event,
``actions`` records what every local member's rules said when an event is
persisted, ``pushers`` and ``gateway`` deliver notifications over HTTP.
"""
