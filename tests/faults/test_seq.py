"""pitot-sim --seq: every API's stream carries the tokens' indices, read
whole and in order by the fault suite's client (directly and through pitot),
and the same client tells a cut stream from a whole one."""

from faults import h, stream, sim_stats

APIS = ("chat", "completions", "responses", "messages", "native")


def t_every_api():
    sim = h.start_sim("--seq", "--tokens-per-s", "2000", "--slots", "4")
    pitot = h.start_pitot([sim.port])
    for port, via in ((sim.port, "direct"), (pitot.port, "through pitot")):
        for api in APIS:
            st = stream(port, api, max_tokens=7)
            assert st.whole(), "%s: %s" % (via, st.describe())
            assert st.tokens == list(range(7)), (via, api, st.tokens)
    # the non-streamed text: one JSON string of the indices in order
    r = h.request(pitot.port, "POST", "/v1/chat/completions", h.chat_body(stream=False, max_tokens=3))
    assert r.status == 200 and b'" t0000 t0001 t0002"' in r.body, r.body[:400]
    h.stop_pitot_clean(pitot)


def t_cut_stream_seen_as_cut():
    sim = h.start_sim("--seq", "--tokens-per-s", "2000", "--die-after", "5")
    pitot = h.start_pitot([sim.port])
    for api in ("chat", "responses", "messages"):
        st = stream(pitot.port, api, max_tokens=20)
        assert st.cut_properly() and not st.whole(), st.describe()
        assert st.tokens == list(range(5)), (api, st.tokens)
    assert sim_stats(sim.port)["died"] == 3
    h.stop_pitot_clean(pitot)


h.check("seq: every API streams t0000.. in order, directly and through pitot", t_every_api)
h.check("seq: a stream cut after 5 tokens is judged cut (error event, no end), tokens 0-4",
        t_cut_stream_seen_as_cut)
h.finish()
