import mlops_lb as ml
from mlops_lb.fleet import Fleet


def test_the_memory_backend_is_built_in():
    with ml.open_fleet(
        {"name": "demo", "capacity": {"min": 1, "desired": 2, "max": 4}}, backend="memory"
    ) as f:
        assert isinstance(f, Fleet) and f.launch() == "http://mem/demo" and len(f.status()) == 2
