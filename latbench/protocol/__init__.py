"""The few-shot protocol: what a method sees (:mod:`.trial`), the metrics and how a trial is scored."""

from latbench.protocol.trial import DEFAULT_SHOTS, DEFAULT_TRIALS, PROTOCOL_VERSION, Oracle, SourceData, Trial, make_trial

__all__ = ["DEFAULT_SHOTS", "DEFAULT_TRIALS", "PROTOCOL_VERSION", "Oracle", "SourceData", "Trial", "make_trial"]
