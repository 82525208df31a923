from mlops_lb.frames import metric_by_name
from mlops_lb.local.metrics import LOCAL_SOURCES


def test_3xx_is_in_the_catalogue_and_counted_locally():
    assert metric_by_name("HTTPCode_Target_3XX_Count").unit == "Count"
    assert "HTTPCode_Target_3XX_Count" in LOCAL_SOURCES
