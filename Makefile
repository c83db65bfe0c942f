.PHONY: demo test install
install:
	pip install -e ".[test]"
demo:
	pip install -e . && seqtasks train lm
test:
	pip install -e ".[test]" && python -m pytest -q
