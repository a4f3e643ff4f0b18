"""The client-server benchmark behind ``scripts/bench_cs.py``: a loopback HTTP
driver for any homeserver (``client``), launchers for matrixd and Synapse
(``servers``), the scenarios (``scenarios``), per-scenario py-spy profiles
(``profiling``) and the report table (``report``).
"""
