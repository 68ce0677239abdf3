"""Properties over random conversations: the rendering is the template, the masks are the replies."""

from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.chat import IGNORE, ROLES, chatml, prompt_length, render_chat, render_preference_batch
from workbench.data.collate import truncate_pair

content = st.text(min_size=1, max_size=30).filter(str.strip)
message = st.builds(lambda role, text: {"role": role, "content": text}, st.sampled_from(ROLES), content)
conversation = st.lists(message, min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(conversation, st.sampled_from(["all", "last", "every"]))
def test_rendering_is_chatml_and_masks_are_the_replies(tok, conv, mode):
    r = render_chat(tok, conv, mode)
    assert tok.decode(r.input_ids) == chatml(conv)
    assert len(r.labels) == len(r.input_ids)
    trained = [t for t in r.labels if t != IGNORE]
    if mode == "every":
        assert r.labels == r.input_ids
        return
    replies = [i for i, m in enumerate(conv) if m["role"] == "assistant"]
    if mode == "last":
        replies = replies[-1:]
    expected = [t for i in replies for t in tok.encode(conv[i]["content"]) + [tok.im_end_id]]
    assert trained == expected


@settings(max_examples=150, deadline=None)
@given(st.lists(content, min_size=1, max_size=3), content, content, st.integers(1, 80))
def test_pair_truncation_keeps_one_prompt_and_fits(tok, turns, good, bad, max_len):
    prompt = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    if prompt[-1]["role"] == "assistant":
        prompt.append({"role": "user", "content": "?"})
    ((c, r),) = render_preference_batch(tok, [{"prompt": prompt, "chosen": [{"role": "assistant", "content": good}],
                                               "rejected": [{"role": "assistant", "content": bad}]}])
    c2, r2 = truncate_pair(c, r, max_len)
    p = prompt_length(c2)
    assert p == prompt_length(r2) and c2.input_ids[:p] == r2.input_ids[:p]
    assert len(c2) <= max_len and len(r2) <= max_len
    assert c2.num_trainable > 0 and r2.num_trainable > 0
    full_p = prompt_length(c)
    assert c2.input_ids[:p] == c.input_ids[full_p - p:full_p]  # the prompt keeps its end
    assert c2.input_ids[p:] == c.input_ids[full_p:full_p + len(c2) - p]  # the response keeps its start
