"""Face-unlock flows behind ``edgeconv enroll / verify / identify / users / unlock``.

Torch-free: an exported model (:class:`~edgeconv.runtime.embedder.Embedder`), the
SQLite template store (:mod:`edgeconv.runtime.store`) and the lock-out policy
(:mod:`edgeconv.runtime.policy`).  Scores are cosine similarities of L2-normalised
embeddings; the decision (template averaging, best match, ``score > threshold``, the
attempt and its lock-out record) is :mod:`edgeconv.runtime.decide`; this module presents.

Exit status of the commands: 0 accepted / matched / done, 1 rejected / no match,
2 user error (one line on stderr), 3 locked out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.decide import (accepts, attempt, average_template,  # noqa: F401
                                     best_match, model_templates)

EXIT_ACCEPT = 0
EXIT_REJECT = 1
EXIT_LOCKED = 3


# ----------------------------------------------------------------------------- helpers
def open_embedder(model, threads: int = 1, flip: bool = False, translate=None):
    """The face model (``translate``: seen through that translator file first)."""
    import warnings

    from edgeconv.runtime.embedder import Embedder, MetadataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetadataWarning)
        emb = Embedder(model, threads=threads, flip=flip)
        if translate is not None:
            from edgeconv.runtime.translator import TranslatingEmbedder, Translator

            try:
                emb = TranslatingEmbedder(emb, Translator(translate, threads=threads))
            except BaseException:
                emb.close()
                raise
    for w in caught:
        if issubclass(w.category, MetadataWarning):
            click.echo(f"edgeconv: warning: {w.message}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return emb


def open_store(db, create: bool = True, trusted: bool = False):
    """The template store; ``trusted``: refuse one others could have written
    (:meth:`TemplateStore.check_trusted`, for unlock) before any warning is printed."""
    import warnings

    from edgeconv.runtime.store import TemplateStore

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = TemplateStore(db, create=create)
    if trusted:
        try:
            store.check_trusted()
        except BaseException:
            store.close()
            raise
    for w in caught:
        click.echo(f"edgeconv: warning: {w.message}", err=True)
    return store


def _embed_timed(emb, items):
    t0 = time.perf_counter()
    e = emb.embed(items)
    return e, (time.perf_counter() - t0) * 1000.0


def _emit(as_json: bool, payload: dict, text: str, emb=None) -> None:
    tr = getattr(emb, "translator", None) if emb is not None else None
    if tr is not None:  # --translate: say so, with the translation's share of the latency
        payload["translator"] = dict(emb.describe(), translate_ms=emb.translate_ms)
        text += (f"\nprobe translated {tr.direction} by {tr.path.name} "
                 f"({emb.translate_ms:.1f} ms of the latency)")
    click.echo(json.dumps(payload, indent=2) if as_json else text)


def _warn_threshold(emb, payload: dict | None = None) -> None:
    """Once every input was accepted: the calibration's warning on stderr (and in JSON)."""
    if emb.threshold_warning:
        if payload is not None:
            payload["threshold_warning"] = emb.threshold_warning
        click.echo(f"edgeconv: warning: {emb.threshold_warning}", err=True)


def _thr_text(thr: float, source: str) -> str:
    return f"threshold {thr:.4f} ({source})"


# ----------------------------------------------------------------------------- enroll
def enroll_command(model, user, images, db=None, replace=False, flip=False, threads=1,
                   as_json=False, translate=None) -> int:
    """Embed ``images`` of ``user``, average them into one template and store it."""
    from edgeconv.runtime.store import check_user_name

    user = check_user_name(user)
    if not images:
        raise EdgeconvError("give at least one image of the user")
    emb = open_embedder(model, threads=threads, flip=flip, translate=translate)
    store = None
    try:
        e, ms = _embed_timed(emb, [str(p) for p in images])  # bad images fail before the db
        template = average_template(e)
        # each image against the others: median pairwise score (one stray image of
        # someone else is flagged without dragging the good ones down)
        n = len(e)
        if n > 1:
            pair = e @ e.T
            consistency = np.array([np.median(np.delete(pair[i], i)) for i in range(n)])
        else:
            consistency = np.ones(1, np.float32)
        store = open_store(db)
        t = store.enroll(user, template, emb.sha256, emb.label, num_images=n, replace=replace)
        warn = []
        try:
            thr, _ = emb.threshold()
        except EdgeconvError:
            thr = None
        if thr is not None and n > 1:
            warn = [str(p) for p, s in zip(images, consistency) if s <= thr]
        payload = {"user": user, "model": emb.label, "model_sha256": emb.sha256,
                   "images": len(images), "db": str(store.path),
                   "consistency_min": float(consistency.min()),
                   "consistency_mean": float(consistency.mean()),
                   "embed_ms_per_image": ms / len(images), "inconsistent_images": warn}
        text = (f"enrolled {user!r}: {len(images)} image(s) averaged into one "
                f"{t.dim}-d template (model {emb.label}, sha256 {emb.sha256[:12]}) in "
                f"{store.path}\n"
                + (f"each image vs the others (median score): min {consistency.min():.3f}, mean "
                   f"{consistency.mean():.3f}; " if n > 1 else "")
                + f"{ms / n:.1f} ms per image")
        _emit(as_json, payload, text, emb)
        for p in warn:
            click.echo(f"edgeconv: warning: {p} scores below the model's calibrated threshold "
                       "against the other images: a different person or a poor crop?", err=True)
    finally:
        if store is not None:
            store.close()
        emb.close()
    return 0


# ----------------------------------------------------------------------------- verify
def verify_command(model, user, image, db=None, far=None, threshold=None, flip=False,
                   threads=1, as_json=False, translate=None) -> int:
    """1:1 verification of ``image`` against ``user``'s template (no lock-out policy)."""
    emb = open_embedder(model, threads=threads, flip=flip, translate=translate)
    try:
        thr, source = emb.threshold(far=far, threshold=threshold)
        with open_store(db, create=False) as store:
            t = store.get_for_model(user, emb.sha256, emb.label)
        e, ms = _embed_timed(emb, str(image))
        score = float(e @ t.embedding)
        accepted = accepts(score, thr)
        payload = {"user": user, "image": str(image), "score": score, "threshold": thr,
                   "threshold_source": source, "accepted": accepted, "latency_ms": ms,
                   "model_load_ms": emb.load_seconds * 1000.0}
        text = (f"{'ACCEPT' if accepted else 'REJECT'} {user!r}: score {score:.4f} "
                f"{'>' if accepted else '<='} {_thr_text(thr, source)}\n"
                f"latency {ms:.1f} ms (decode + preprocess + inference), model load "
                f"{emb.load_seconds * 1000:.0f} ms")
        _warn_threshold(emb, payload)
        _emit(as_json, payload, text, emb)
    finally:
        emb.close()
    return EXIT_ACCEPT if accepted else EXIT_REJECT


# ----------------------------------------------------------------------------- identify
def _model_templates(store, emb):
    return model_templates(store, emb.sha256, emb.label)


def identify_command(model, image, db=None, far=None, threshold=None, top=3, flip=False,
                     threads=1, as_json=False, translate=None) -> int:
    """1:N: the best-matching enrolled user above the threshold, or none."""
    emb = open_embedder(model, threads=threads, flip=flip, translate=translate)
    try:
        thr, source = emb.threshold(far=far, threshold=threshold)
        with open_store(db, create=False) as store:
            templates = _model_templates(store, emb)
            ignored = len(store) - len(templates)
        e, ms = _embed_timed(emb, str(image))
        ranked = best_match(e, templates)
        user, score = ranked[0]
        matched = accepts(score, thr)
        payload = {"image": str(image), "match": user if matched else None,
                   "best_user": user, "best_score": score, "threshold": thr,
                   "threshold_source": source, "candidates": len(templates),
                   "ignored_other_models": ignored,
                   "top": [{"user": u, "score": s} for u, s in ranked[:top]],
                   "latency_ms": ms}
        head = (f"MATCH {user!r}: score {score:.4f} > " if matched
                else f"NO MATCH (best {user!r}: score {score:.4f} <= ")
        text = head + _thr_text(thr, source) + ("" if matched else ")")
        text += f"\ncompared with {len(templates)} enrolled user(s)"
        if ignored:
            text += f" ({ignored} enrolled with other models ignored)"
        text += f"; latency {ms:.1f} ms"
        if top > 1:
            text += "\n" + "\n".join(f"  {u:<24} {s:.4f}" for u, s in ranked[:top])
        _warn_threshold(emb, payload)
        _emit(as_json, payload, text, emb)
    finally:
        emb.close()
    return EXIT_ACCEPT if matched else EXIT_REJECT


# ----------------------------------------------------------------------------- users
def users_list_command(db=None, as_json=False) -> int:
    from edgeconv.runtime.store import default_db_path

    path = Path(db).expanduser() if db else default_db_path()
    if not path.exists():
        _emit(as_json, {"db": str(path), "users": []}, f"no template database at {path}")
        return 0
    from edgeconv.runtime.policy import IDENTIFY_SUBJECT, LockoutPolicy

    store = open_store(path, create=False)
    try:
        users = store.users()
        now = time.time()
        ident = LockoutPolicy(store).state(IDENTIFY_SUBJECT)
        ident_left = ident.remaining(now)
        if as_json:
            click.echo(json.dumps({"db": str(store.path), "users": users,
                                   "identify_mode": {"failures": ident.failures,
                                                     "lockouts": ident.lockouts,
                                                     "locked_for": ident_left}}, indent=2))
            return 0
        if ident_left > 0:
            click.echo(f"identify mode is locked out for {ident_left:.0f} s: every unlock is "
                       "refused until then (`edgeconv users reset` clears it)")
        elif ident.failures:
            click.echo(f"identify mode: {ident.failures} failed attempt(s)")
        if not users:
            click.echo(f"no users enrolled in {store.path}")
            return 0
        click.echo(f"{len(users)} user(s) in {store.path}")
        from edgeconv.metadata import escape_text

        for u in users:  # a database written by an older version may hold raw names
            u["model_name"] = escape_text(u["model_name"], 80)
        mw = max([20] + [len(u["model_name"]) for u in users])
        click.echo(f"{'user':<24} {'model':<{mw}} {'sha256':<12} {'images':>6}  "
                   f"{'enrolled':<19} state")
        for u in users:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(u["updated"]))
            state = "ok"
            if u["locked_until"] and u["locked_until"] > now:
                state = f"locked {u['locked_until'] - now:.0f} s"
            elif u["failures"]:
                state = f"{u['failures']} failed"
            click.echo(f"{u['user']:<24} {u['model_name']:<{mw}} {u['model_hash'][:12]:<12} "
                       f"{u['num_images']:>6}  {when:<19} {state}")
    finally:
        store.close()
    return 0


def users_remove_command(users, db=None) -> int:
    with open_store(db, create=False) as store:
        for u in users:
            store.remove(u)
            click.echo(f"removed {u!r} from {store.path}")
    return 0


def users_reset_command(user, db=None) -> int:
    from edgeconv.runtime.policy import IDENTIFY_SUBJECT, LockoutPolicy

    store = open_store(db, create=False)
    try:
        subject = user if user else IDENTIFY_SUBJECT
        if user and user not in store:
            from edgeconv.runtime.store import UnknownUser

            raise UnknownUser(f"no user {user!r} is enrolled in {store.path}")
        LockoutPolicy(store).reset(subject)
        click.echo(f"cleared the lock-out state of {user!r}" if user
                   else "cleared the identify-mode lock-out state")
    finally:
        store.close()
    return 0


# ----------------------------------------------------------------------------- unlock
def _attempt(emb, store, policy, e, user, thr):
    return attempt(store, policy, e, user, thr, emb.sha256, emb.label)


def _report_attempt(r, thr, source, ms, policy, as_json, user, emb=None, show_score=False):
    payload = dict(r, threshold=thr, threshold_source=source, latency_ms=ms)
    if not (r["accepted"] or show_score):
        # a rejection says no more than "rejected": a score next to the threshold is
        # feedback for someone tuning an attack at the camera (--show-score to see it)
        payload.pop("score", None)
        payload.pop("best_user", None)
        payload.pop("threshold", None)
        why = ": that user is locked out" if r.get("refused_locked_user") else ""
        text = f"REJECTED{why}; latency {ms:.1f} ms" + _attempts_left(r, policy)
        _emit(as_json, payload, text, emb)
        return
    if r["accepted"]:
        text = (f"UNLOCKED {r['best_user']!r}: score {r['score']:.4f} > "
                f"{_thr_text(thr, source)}; latency {ms:.1f} ms")
    else:
        who = f"{user!r}" if user else f"(best {r['best_user']!r})"
        if r.get("refused_locked_user"):
            text = (f"REJECTED (best {r['best_user']!r}, score {r['score']:.4f} > "
                    f"{_thr_text(thr, source)}): that user is locked out; latency {ms:.1f} ms")
        else:
            text = (f"REJECTED {who}: score {r['score']:.4f} <= {_thr_text(thr, source)}; "
                    f"latency {ms:.1f} ms")
        text += _attempts_left(r, policy)
    _emit(as_json, payload, text, emb)


def _attempts_left(r, policy) -> str:
    if r["locked_for"] > 0:
        return (f"\nlocked out for {r['locked_for']:.0f} s after {policy.max_failures} "
                "rejected attempts")
    return f"\n{policy.max_failures - r['failures']} attempt(s) left before a lock-out"


def _check_model_counted(store, policy, emb, user, subject) -> None:
    """The model must be the one the templates were made with; a mismatch is refused in one
    line AND counted as a failed attempt of ``subject`` (swapping models is an attack, not
    a free retry)."""
    from edgeconv.runtime.store import ModelMismatch

    try:
        if user:
            store.get_for_model(user, emb.sha256, emb.label)
        else:
            _model_templates(store, emb)
    except ModelMismatch as exc:
        st = policy.record(subject, False)
        left = st.remaining(policy.clock())
        tail = (f"locked out for {left:.0f} s" if left > 0 else
                f"{policy.max_failures - st.failures} attempt(s) left before a lock-out")
        raise ModelMismatch(f"{exc} (counted as a failed attempt: {tail})") from None


def unlock_command(model, user=None, images=(), camera=None, db=None, far=None,
                   threshold=None, max_failures=5, cooldown=30.0, growth=2.0, flip=False,
                   threads=1, frames=3, interval=0.5, crop=0.6, max_attempts=0,
                   save_crop=None, as_json=False, translate=None, show_score=False) -> int:
    """One unlock attempt per image (or live camera attempts) through the lock-out policy."""
    from edgeconv.runtime.policy import IDENTIFY_SUBJECT, LockedOut, LockoutPolicy

    if camera is None and not images:
        raise EdgeconvError("give an image file or --camera INDEX")
    if camera is not None and images:
        raise EdgeconvError("give either image files or --camera, not both")
    if user is not None:
        from edgeconv.runtime.store import check_user_name

        user = check_user_name(user)
    emb = open_embedder(model, threads=threads, flip=flip, translate=translate)
    store = None
    try:
        thr, source = emb.threshold(far=far, threshold=threshold)
        store = open_store(db, create=False, trusted=True)
        policy = LockoutPolicy(store, max_failures=max_failures, cooldown=cooldown,
                               growth=growth)
        subject = user or IDENTIFY_SUBJECT
        try:
            policy.check(subject)
            _check_model_counted(store, policy, emb, user, subject)
            _warn_threshold(emb)
            if camera is None:
                code = EXIT_REJECT
                for img in images:
                    e, ms = _embed_timed(emb, str(img))
                    r = _attempt(emb, store, policy, e, user, thr)
                    _report_attempt(r, thr, source, ms, policy, as_json, user, emb, show_score)
                    if r["accepted"]:
                        return EXIT_ACCEPT
                    if r["locked_for"] > 0:
                        return EXIT_LOCKED
                return code
            return _camera_loop(emb, store, policy, user, thr, source, camera, frames,
                                interval, crop, max_attempts, save_crop, as_json, show_score)
        except LockedOut as exc:
            if as_json:
                click.echo(json.dumps({"accepted": False, "locked_out": True,
                                       "retry_after_s": exc.remaining}))
            click.echo(f"edgeconv: {exc}", err=True)
            return EXIT_LOCKED
    finally:
        if store is not None:
            store.close()
        emb.close()


def _camera_loop(emb, store, policy, user, thr, source, index, frames, interval, crop,
                 max_attempts, save_crop, as_json, show_score=False) -> int:
    from edgeconv.runtime.camera import Camera, center_crop_resize

    attempts = 0
    with Camera(int(index)) as cam:
        click.echo(f"camera {index}: hold your face centred and upright in the frame "
                   f"(no face detector: the centre {crop:.0%} is used); Ctrl-C stops", err=True)
        while True:
            crops = [center_crop_resize(cam.read(), emb.input_size, crop)
                     for _ in range(max(1, int(frames)))]
            if save_crop:
                from edgeconv.data.images import save_image

                save_image(save_crop, crops[-1])
            t0 = time.perf_counter()
            e = emb.embed_images(np.stack(crops)).mean(axis=0)
            e /= np.linalg.norm(e)
            ms = (time.perf_counter() - t0) * 1000.0
            r = _attempt(emb, store, policy, e, user, thr)
            _report_attempt(r, thr, source, ms, policy, as_json, user, emb, show_score)
            attempts += 1
            if r["accepted"]:
                return EXIT_ACCEPT
            if r["locked_for"] > 0:
                return EXIT_LOCKED
            if max_attempts and attempts >= max_attempts:
                return EXIT_REJECT
            time.sleep(max(0.0, float(interval)))
