import pytest
import transformers


@pytest.mark.parametrize("kind", ["bert", "distilbert", "bart", "qwen2", "llama"])
def test_tiny_models_load_with_auto_classes(tiny_models, kind):
    path = tiny_models(kind)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    ids = tok(["the food was great"], return_tensors="pt")
    ids.pop("token_type_ids", None)
    if tok.pad_token is None:
        assert kind in ("qwen2", "llama")
    out = model(**ids)
    assert out.logits.shape == (1, 3)
