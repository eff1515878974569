"""Built-in latency predictors, one class per file, found by name through this table (imported lazily)."""

BUILTIN = {
    "flops": "baselines.flops:FLOPsRegression",
    "flops-params": "baselines.flops_params:FLOPsParamsRegression",
    "lookup": "baselines.lookup:LayerwiseLookup",
    "help": "baselines.help:HELP",
    "brp-nas": "baselines.brp_nas:BRPNAS",
    "nasflat": "baselines.nasflat:NASFLAT",
    "mlp-finetune": "baselines.mlp_finetune:MLPFinetune",
    "mlp-hwparams": "baselines.mlp_finetune:MLPHardwareParams",
    "opwise-lasso": "baselines.opwise:OpwiseLasso",
    "opwise-rf": "baselines.opwise:OpwiseRF",
    "opwise-gbdt": "baselines.opwise:OpwiseGBDT",
    "opwise-mlp": "baselines.opwise:OpwiseMLP",
    "nn-meter": "baselines.nn_meter:NNMeter",
    "litepred": "baselines.litepred:LitePred",
}
