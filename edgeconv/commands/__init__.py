"""The ``edgeconv`` subcommands, one module per command group.

``edgeconv.cli`` is the root group; it adds the ``COMMANDS`` of each module here. A command
module may import the library (lazily, inside the command body, wherever the library part
imports torch); the library never imports a command module. Shared pieces sit below the
command modules: :mod:`~edgeconv.commands.common` (click callbacks, exit codes) and
:mod:`~edgeconv.commands.config_options` (options generated from a config dataclass).
"""
