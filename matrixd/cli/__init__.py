"""Operator commands (``hash_password``, ``export_signing_key``, ``update_database``,
``matrixd_port_db``, ``register_new_matrix_user``): importable modules behind the console entry points and the
files in ``scripts/``.  They run without a reactor: databases are opened in
inline mode and driven synchronously."""
