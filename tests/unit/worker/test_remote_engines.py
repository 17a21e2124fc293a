"""Engine profiles: which engine a /v1/models answer names, vLLM's load from /metrics, per-engine request fields."""

from __future__ import annotations

from gateway.worker.engines import kind_from_models, profile_for, vllm_load


def test_engine_kind_model_and_context_from_models() -> None:
    """owned_by names the engine; max_model_len is the context; llama-cpp-python's owner is 'me'."""
    vllm = {"data": [{"id": "/m", "owned_by": "vllm", "max_model_len": 2048}]}
    assert kind_from_models(vllm) == ("vllm", "/m", 2048)
    assert kind_from_models({"data": [{"id": "x", "owned_by": "me"}]}) == ("llamacpp", "x", None)
    assert kind_from_models({"data": []}) == ("openai", None, None)


def test_vllm_load_reads_running_and_waiting() -> None:
    """Running and waiting request gauges are summed over label sets."""
    text = (
        "# HELP vllm:num_requests_running x\n"
        'vllm:num_requests_running{model_name="m"} 3.0\n'
        'vllm:num_requests_waiting{model_name="m"} 2.0\n'
        "vllm:num_requests_swapped 9\n"
    )
    assert vllm_load(text) == (3, 2)


def test_request_fields_per_engine() -> None:
    """vLLM: token ids and usage on every chunk; llama.cpp: top_logprobs >= 1, greedy without repeat penalty."""
    vllm = profile_for("vllm", "/health").request_fields(0)
    assert vllm["return_tokens_as_token_ids"] and vllm["stream_options"]["continuous_usage_stats"]
    assert "top_logprobs" not in vllm
    with_alternatives = profile_for("vllm", "/health").request_fields(3)
    assert with_alternatives["top_logprobs"] == 3 and "return_tokens_as_token_ids" not in with_alternatives
    llama = profile_for("llamacpp", "/v1/models").request_fields(0)
    assert llama["top_logprobs"] == 1 and llama["repeat_penalty"] == 1.0 and "stream_options" not in llama
