"""The replica of Numerai's model-upload runtime: the pinned packages of each image (`pins/py3.X.txt`), the replica's
virtual environment and the watch over the pickle's run (`replica`), and the standalone runner that does what
Numerai's runner does (`runner`, imports only the standard library and the runtime's packages)."""
