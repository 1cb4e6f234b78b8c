"""One module per dvc.yaml stage, named as the stage and as its `genzoo` command."""
