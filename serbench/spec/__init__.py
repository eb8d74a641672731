"""Job specs: the YAML a user writes (``job``), its search-space parameters (``space``),
the strict base of every spec model and plugin options (``options``), and the strict YAML
reader (``strict_yaml``). Plugins import what they need from here."""

from serbench.spec.job import (
    BackboneSpec,
    Budget,
    DatasetSpec,
    EngineSpec,
    ExecutionSpec,
    HoldoutProtocol,
    JobSpec,
    LosoProtocol,
    PrunerSpec,
    Resources,
    SpeakerHoldoutProtocol,
    SubsetSpec,
    TrainParams,
    TransferTarget,
    BACKBONE_PREFIX,
    TUNABLE,
    job_schema,
    load_job,
    parse_job,
)
from serbench.spec.options import NoOptions, StrictModel, describe_validation_error, plugin_options
from serbench.spec.space import ChoiceParam, FloatParam, IntParam, Param

__all__ = [
    "BackboneSpec", "Budget", "ChoiceParam", "DatasetSpec", "EngineSpec", "ExecutionSpec", "FloatParam", "HoldoutProtocol",
    "IntParam", "JobSpec", "LosoProtocol", "NoOptions", "Param", "PrunerSpec", "Resources", "SpeakerHoldoutProtocol",
    "StrictModel", "SubsetSpec", "TUNABLE", "BACKBONE_PREFIX", "TrainParams", "TransferTarget", "describe_validation_error",
    "job_schema", "load_job", "parse_job", "plugin_options",
]
