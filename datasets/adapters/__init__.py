"""One module per database, each registered with `@DATASETS.register(name)`."""
