"""Training pipelines of hfnn (installed as ``hfnn.pipelines``): one entry point per task, recipes per architecture."""
