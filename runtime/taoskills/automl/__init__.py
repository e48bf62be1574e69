"""AutoML on Optuna: hyperparameter searches over a model skill's train action.

Modules: :mod:`space` (search space from the train schema), :mod:`algorithms` (TAO names ->
Optuna samplers/pruners), :mod:`metric` (the skill's metric contract), :mod:`study` (run
config, storage, run folder), :mod:`runner` (the controller: trials as train jobs),
:mod:`results` (status, best_rec, report, cleanup), :mod:`askTell` (an agent in the loop),
:mod:`plots`, :mod:`service_hook` (``launch_job`` with automl_policy on), :mod:`query`
(status/best of a run for the CLI and MCP). Importing this package imports no Optuna.
"""
