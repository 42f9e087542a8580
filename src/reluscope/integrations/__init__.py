"""Where practitioners train: Lightning, the Hugging Face ``Trainer``, TensorBoard and Weights & Biases.

Each integration is its own module and imports its library only when used; a missing library raises an
ImportError naming the extra to install:

=========================================  =============================================  ==============================
module                                     what                                           extra
=========================================  =============================================  ==============================
``reluscope.integrations.loggers``         :func:`log_dead_units` to a ``SummaryWriter``  ``tensorboard`` / ``wandb``
                                           or a ``wandb`` run; :func:`dead_unit_metrics`
``reluscope.integrations.lightning``       ``DeadUnitCallback`` (``lightning.pytorch``)   ``lightning``
``reluscope.integrations.hf``              ``DeadUnitTrainerCallback`` (``transformers``) ``hf``
=========================================  =============================================  ==============================

``pip install 'reluscope[integrations]'`` installs all of them. See ``docs/integrations/``.
"""

__all__: list[str] = []
