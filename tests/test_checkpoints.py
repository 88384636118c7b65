"""Published checkpoints of the three ecosystems, rebuilt here from each one's module structure.

No weights are downloaded: each test writes a file in a foreign layout, derived from the
module tree that ecosystem builds (the source file is named at each builder), then loads it.
"""

import http.server
import pickle
import re
import threading
from functools import partial

import numpy as np
import pytest
import torch
import torchvision

import temporalshift as ts
from temporalshift.cli import main
from temporalshift.models import hub
from temporalshift.models.loading import recognise


def _randomised(module, seed=0):
    """Distinct, well-scaled values everywhere (so a misplaced tensor shows, and outputs stay finite)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
            elif name.endswith("running_var") or name.endswith("weight"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return module.eval()


def _tv_resnet(depth=50):
    return _randomised(getattr(torchvision.models, f"resnet{depth}")())


def _assert_backbone_equals(model, reference: dict, prefix="backbone."):
    ours = model.state_dict()
    for k, v in reference.items():
        assert torch.equal(ours[prefix + k], v), k


# --- the authors' repository (ops/models.py: TSN wraps torchvision's ResNet as base_model) --------


def _authors_resnet(tv, shifted=r"conv1", classes=10, every=1):
    """ops/temporal_shift.py (blockres): block.conv1 = TemporalShift(net=conv1); DataParallel prefix."""
    sd = {}
    for k, v in tv.state_dict().items():
        if k.startswith("fc."):
            continue  # TSN replaces base_model.fc by Dropout and adds new_fc
        m = re.match(r"(layer\d)\.(\d+)\.conv1\.(.+)", k)
        if shifted and m and int(m.group(2)) % every == 0:
            k = f"{m.group(1)}.{m.group(2)}.conv1.net.{m.group(3)}"
        sd["module.base_model." + k] = v
    sd["module.new_fc.weight"] = torch.randn(classes, 2048)
    sd["module.new_fc.bias"] = torch.randn(classes)
    return sd


def test_authors_resnet50_tsm(tmp_path):
    tv = _tv_resnet()
    sd = _authors_resnet(tv)
    path = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth"
    torch.save({"epoch": 50, "arch": "resnet50", "state_dict": sd, "best_prec1": 71.2}, path)
    model = ts.load_checkpoint(path)
    assert model.name == "tsm_r50_1x1x8_k400" and model.num_classes == 10 and model.num_segments == 8
    _assert_backbone_equals(model, {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    assert torch.equal(model.head.fc.weight, sd["module.new_fc.weight"])
    same = ts.create_model("tsm_r50_1x1x8_k400", num_classes=10, checkpoint=path)  # into a given model
    assert torch.equal(same.backbone.layer4[2].bn3.running_var, tv.layer4[2].bn3.running_var)


def test_authors_tsn_equals_torchvision_frame_by_frame(tmp_path):
    tv = _tv_resnet()
    sd = _authors_resnet(tv, shifted=None)
    path = tmp_path / "TSN_kinetics_RGB_resnet50_avg_segment8_e50.pth"
    torch.save({"state_dict": sd}, path)
    model = ts.load_checkpoint(path).eval()
    assert model.spec.is_tsn
    clip = torch.randn(1, 8, 3, 64, 64)
    trunk = torch.nn.Sequential(*list(tv.children())[:-1])  # everything up to fc
    with torch.no_grad():
        feats = trunk(clip[0]).flatten(1)
        expected = (feats @ sd["module.new_fc.weight"].t() + sd["module.new_fc.bias"]).mean(0, keepdim=True)
        torch.testing.assert_close(model(clip), expected, rtol=1e-4, atol=1e-4)


def test_authors_resnet101_shifts_every_other_block(tmp_path):
    tv = _tv_resnet(101)
    path = tmp_path / "TSM_somethingv2_RGB_resnet101_shift8_blockres_avg_segment8_e45.pth"
    torch.save({"state_dict": _authors_resnet(tv, classes=174, every=2)}, path)
    found = recognise(path)
    assert found.model_name == "tsm_r101_1x1x8_sthv2" and found.overrides == {}
    model = ts.load_checkpoint(path)
    assert model.backbone.layer3[2].shift is not None and model.backbone.layer3[1].shift is None


def test_authors_block_placement_and_temporal_pool(tmp_path):
    tv = _tv_resnet()
    sd = {}
    for k, v in tv.state_dict().items():
        if k.startswith("fc."):
            continue
        k = re.sub(r"^(layer\d)\.(\d+)\.", r"\1.\2.net.", k)  # "block": TemporalShift(net=block)
        k = re.sub(r"^layer2\.", "layer2.net.", k)  # TemporalPool(net=layer2)
        sd["module.base_model." + k] = v
    sd["module.new_fc.weight"], sd["module.new_fc.bias"] = torch.randn(400, 2048), torch.randn(400)
    path = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_block_avg_segment8_e50_tpool.pth"
    torch.save({"state_dict": sd}, path)
    model = ts.load_checkpoint(path)
    assert model.spec.shift_place == "block" and model.spec.temporal_pool
    assert model(torch.randn(1, 8, 3, 64, 64)).shape == (1, 400)


def test_authors_non_local_folds_the_conv_bias(tmp_path):
    tv = _tv_resnet()
    sd = _authors_resnet(tv, classes=400)
    g = torch.Generator().manual_seed(1)
    for layer, blocks, c in (("layer2", (0, 2), 512), ("layer3", (0, 2, 4), 1024)):
        for b in blocks:  # ops/non_local.py: NL3DWrapper(block) with nl = NONLocalBlock3D (embedded gaussian)
            for k in [k for k in sd if k.startswith(f"module.base_model.{layer}.{b}.")]:
                sd[k.replace(f"{layer}.{b}.", f"{layer}.{b}.block.")] = sd.pop(k)
            p = f"module.base_model.{layer}.{b}.nl."
            for name in ("g.0", "theta", "phi.0"):
                sd[p + name + ".weight"] = torch.randn(c // 2, c, 1, 1, 1, generator=g)
                sd[p + name + ".bias"] = torch.randn(c // 2, generator=g)
            sd[p + "W.0.weight"] = torch.randn(c, c // 2, 1, 1, 1, generator=g)
            sd[p + "W.0.bias"] = torch.randn(c, generator=g)
            for stat, val in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.5), ("running_var", 2.0)):
                sd[p + "W.1." + stat] = torch.full((c,), val)
            sd[p + "W.1.num_batches_tracked"] = torch.tensor(0)
    path = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense_nl.pth"
    torch.save({"state_dict": sd}, path)
    model = ts.load_checkpoint(path)
    assert model.name == "tsm_r50_nl_embgauss_1x1x8_k400" and model.spec.sampling == "dense"
    nl = model.backbone.layer3[4].non_local
    expected_mean = 0.5 - sd["module.base_model.layer3.4.nl.W.0.bias"]
    assert torch.equal(nl.bn.running_mean, expected_mean) and nl.conv_out.bias is None


def _tv_to_authors_mbv2(k):
    """archs/mobilenet_v2.py: flat Sequential indices (conv.0/1 pw, 3/4 dw, 6/7 pw-linear)."""
    m = re.match(r"features\.(\d+)\.conv\.(.+)", k)
    if not m:
        return k
    block, rest = int(m.group(1)), m.group(2)
    table = {"0.0": "0", "0.1": "1", "1": "3", "2": "4"} if block == 1 else \
        {"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7"}  # fmt: skip
    for tv_idx, ours in table.items():
        if rest.startswith(tv_idx + "."):
            shifted = block in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16) and ours == "0"
            return f"features.{block}.conv.{ours}.{'net.' if shifted else ''}{rest[len(tv_idx) + 1 :]}"
    raise AssertionError(k)


def test_authors_mobilenetv2_and_online_layout(tmp_path):
    tv = _randomised(torchvision.models.mobilenet_v2())
    feats = {k: v for k, v in tv.state_dict().items() if k.startswith("features.")}
    sd = {"module.base_model." + _tv_to_authors_mbv2(k): v for k, v in feats.items()}
    sd["module.new_fc.weight"], sd["module.new_fc.bias"] = torch.randn(400, 1280), torch.randn(400)
    path = tmp_path / "TSM_kinetics_RGB_mobilenetv2_shift8_blockres_avg_segment8_e100_dense.pth"
    torch.save({"state_dict": sd}, path)
    model = ts.load_checkpoint(path)
    assert model.name == "tsm_mobilenetv2_1x1x8_k400"
    _assert_backbone_equals(model, feats)
    online = {_tv_to_authors_mbv2(k).replace(".net.", "."): v for k, v in feats.items()}  # online_demo: no prefix
    online["classifier.weight"], online["classifier.bias"] = torch.randn(27, 1280), torch.randn(27)
    path = tmp_path / "mobilenetv2_jester_online.pth.tar"
    torch.save(online, path)
    model = ts.load_checkpoint(path)
    assert model.num_classes == 27 and model.spec.shift_direction == "right"
    assert model.spec.labels == "jester"  # the file name says Jester: its bundled class names
    _assert_backbone_equals(model, feats)


# --- mmaction2 (resnet_tsm.py over mmcv ConvModules; mobilenet_v2_tsm.py; non_local.py) ---------------


def _tv_to_mma_resnet(k):
    k = re.sub(r"^conv1\.", "conv1.conv.", k)
    k = re.sub(r"^bn1\.", "conv1.bn.", k)
    k = re.sub(r"\.conv1\.weight$", ".conv1.conv.net.weight", k)  # blockres wraps the inner conv
    k = re.sub(r"\.conv([23])\.weight$", r".conv\1.conv.weight", k)
    k = re.sub(r"\.bn(\d)\.", r".conv\1.bn.", k)
    return k.replace(".downsample.0.", ".downsample.conv.").replace(".downsample.1.", ".downsample.bn.")


def test_mmaction2_resnet50_tsm_with_gaussian_non_local(tmp_path):
    tv = _tv_resnet()
    ref = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    sd = {"backbone." + _tv_to_mma_resnet(k): v for k, v in ref.items()}
    # mmcv NonLocal3d, gaussian mode: g and conv_out only (phi is a bare max-pool)
    for layer, blocks, c in (("layer2", (0, 2), 512), ("layer3", (0, 2, 4), 1024)):
        for b in blocks:
            p = f"backbone.{layer}.{b}."
            for k in [k for k in sd if k.startswith(p)]:
                sd[k.replace(p, p + "block.")] = sd.pop(k)
            sd[p + "non_local_block.g.0.conv.weight"] = torch.randn(c // 2, c, 1, 1, 1)
            sd[p + "non_local_block.g.0.conv.bias"] = torch.randn(c // 2)
            sd[p + "non_local_block.conv_out.conv.weight"] = torch.randn(c, c // 2, 1, 1, 1)
            for stat in ("weight", "bias", "running_mean", "running_var"):
                sd[p + "non_local_block.conv_out.bn." + stat] = torch.rand(c)
            sd[p + "non_local_block.conv_out.bn.num_batches_tracked"] = torch.tensor(0)
    sd["cls_head.fc_cls.weight"], sd["cls_head.fc_cls.bias"] = torch.randn(400, 2048), torch.randn(400)
    sd["data_preprocessor.mean"] = torch.zeros(3, 1, 1)
    path = tmp_path / "tsm_imagenet-pretrained-r50-nl-gaussian_8xb16-1x1x8-50e_kinetics400-rgb_20220831-7e54dacf.pth"
    torch.save({"meta": {"epoch": 50}, "state_dict": sd}, path)
    model = ts.load_checkpoint(path)
    assert model.name == "tsm_r50_nl_gauss_1x1x8_k400"
    _assert_backbone_equals(model, ref)
    assert torch.equal(model.backbone.layer3[4].non_local.g.bias, sd["backbone.layer3.4.non_local_block.g.0.conv.bias"])


def test_mmaction2_mobilenetv2(tmp_path):
    tv = _randomised(torchvision.models.mobilenet_v2())
    feats = {k: v for k, v in tv.state_dict().items() if k.startswith("features.")}
    stages = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 3), (6, 3), (7, 1)]
    block_name = {}
    n = 1
    for layer, count in stages:
        for b in range(count):
            block_name[n] = f"layer{layer}.{b}"
            n += 1
    sd = {}
    for k, v in feats.items():
        i, rest = k.split(".", 2)[1:]
        i = int(i)
        if i in (0, 18):  # mobilenet_v2_tsm.py: conv1 / conv2 ConvModules
            kind, leaf = rest.split(".", 1)
            sd[f"backbone.conv{1 if i == 0 else 2}.{'conv' if kind == '0' else 'bn'}.{leaf}"] = v
            continue
        parts = rest.split(".")  # conv.<j>[.<0|1>].leaf
        j = int(parts[1])
        last = 2 if i > 1 else 1  # mmcv InvertedResidual: conv.0..conv.2 ConvModules (t=1: conv.0, conv.1)
        if j < last:
            module, leaf = ("conv" if parts[2] == "0" else "bn"), ".".join(parts[3:])
        else:
            module, leaf, j = ("conv" if j == last else "bn"), ".".join(parts[2:]), last
        shifted = i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16) and j == 0  # the whole ConvModule is wrapped
        sd[f"backbone.{block_name[i]}.conv.{j}.{'net.' if shifted else ''}{module}.{leaf}"] = v
    sd["cls_head.fc_cls.weight"], sd["cls_head.fc_cls.bias"] = torch.randn(400, 1280), torch.randn(400)
    path = tmp_path / "tsm_imagenet-pretrained-mobilenetv2_8xb16-1x1x8-100e_kinetics400-rgb_20230414-401127fd.pth"
    torch.save({"state_dict": sd}, path)
    model = ts.load_checkpoint(path)
    assert model.name == "tsm_mobilenetv2_1x1x8_k400"
    _assert_backbone_equals(model, feats)


def test_mmaction2_mobileone(tmp_path):
    ref = _randomised(ts.create_model("tsm_mobileones4_1x1x16_k400", backbone="mobileone_s0", num_classes=7))
    sd = {}
    for k, v in ref.state_dict().items():
        k = re.sub(r"^backbone\.(stage0|stage\d\.\d+)\.", r"backbone.\1.net.", k)  # mobileone_tsm.py
        k = re.sub(r"\.se\.conv(\d)\.", r".se.conv\1.conv.", k)  # mmpretrain SELayer ConvModules
        sd[k.replace("head.fc.", "cls_head.fc_cls.")] = v
    path = tmp_path / "tsm_mobileone-s0_1x1x16_kinetics400.pth"
    torch.save({"state_dict": sd}, path)
    model = ts.load_checkpoint(path)
    assert model.spec.backbone == "mobileone_s0" and model.num_classes == 7 and model.num_segments == 16
    _assert_backbone_equals(model, ref.state_dict(), prefix="")


# --- PaddleVideo (.pdparams: a pickle of numpy arrays; resnet_tsm.py names) ------------------------------


def _tv_to_paddle(k, depth=50):
    if k.startswith(("conv1.", "bn1.")):
        part = "_conv" if k.startswith("conv1.") else "_batch_norm"
        return f"backbone.conv.{part}.{_paddle_leaf(k.split('.', 1)[1])}"
    m = re.match(r"layer(\d)\.(\d+)\.(\w+?)(\d?)\.(.+)", k)
    layer, block, kind, idx, leaf = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4), m.group(5)
    letter = chr(97 + block) if not (depth >= 101 and layer == 3) else ("a" if block == 0 else f"b{block}")
    name = f"res{layer + 1}{letter}"
    if kind == "downsample":
        sub, part = "short", "_conv" if leaf.startswith("0.") else "_batch_norm"
        leaf = leaf.split(".", 1)[1]
    else:
        sub, part = f"conv{int(idx) - 1}", "_conv" if kind == "conv" else "_batch_norm"
    return f"backbone.{name}.{sub}.{part}.{_paddle_leaf(leaf)}"


def _paddle_leaf(leaf):
    return {"running_mean": "_mean", "running_var": "_variance"}.get(leaf, leaf)


def test_paddlevideo_pdparams_without_paddle(tmp_path):
    tv = _tv_resnet()
    ref = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.") and "num_batches" not in k}
    arrays = {_tv_to_paddle(k): v.numpy() for k, v in ref.items()}
    fc = np.random.default_rng(0).normal(size=(2048, 400)).astype(np.float32)  # paddle Linear: [in, out]
    arrays["head.fc.weight"], arrays["head.fc.bias"] = fc, np.zeros(400, np.float32)
    arrays["StructuredToParameterName@@"] = {"head.fc.weight": "linear_0.w_0"}
    path = tmp_path / "TSM_k400.pdparams"
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    found = recognise(path)
    assert found.layout == "paddlevideo" and found.overrides["shift_direction"] == "bidirectional_reversed"
    model = ts.load_checkpoint(path)
    for k, v in ref.items():
        assert torch.equal(model.state_dict()["backbone." + k], v), k
    assert torch.equal(model.head.fc.weight, torch.from_numpy(fc).t())
    assert model.backbone.layer1[0].shift.direction == "bidirectional_reversed"


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickles_are_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pd = tmp_path / "evil.pdparams"
    pd.write_bytes(pickle.dumps({"backbone.conv._conv.weight": _Evil()}))
    with pytest.raises(ValueError, match="refusing to load .*builtins.exec"):
        ts.load_checkpoint(pd)
    pt = tmp_path / "evil.pth"
    pt.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    with pytest.raises(ValueError, match="refusing to load"):
        ts.load_checkpoint(pt)
    assert main(["convert", str(pt), str(tmp_path / "out.pt")]) == 1
    zipped = tmp_path / "evil_zip.pt"  # torch.save's own zip format around the same object
    torch.save({"state_dict": _Evil()}, zipped)
    with pytest.raises(ValueError, match="refusing to load .*GLOBAL (builtins.)?exec"):
        ts.load_checkpoint(zipped)
    assert not (tmp_path / "PWNED").exists()


# --- mismatches, conversion, downloads -----------------------------------------------------------------


def test_a_mismatch_is_refused_with_one_clear_message(tmp_path):
    tv = _tv_resnet()
    path = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment16_e50.pth"
    torch.save({"state_dict": _authors_resnet(tv)}, path)
    with pytest.raises(ValueError, match="num_segments=16 in the file, 8 in the model"):
        ts.create_model("tsm_r50_1x1x8_k400", num_classes=10, checkpoint=path)
    assert ts.load_checkpoint(path).num_segments == 16
    tsn_file = tmp_path / "TSN_kinetics_RGB_resnet50_avg_segment8_e50.pth"
    torch.save({"state_dict": _authors_resnet(tv, shifted=None)}, tsn_file)
    with pytest.raises(ValueError, match=r"the file is TSN \(no shift\), the model is TSM"):
        ts.create_model("tsm_r50_1x1x8_k400", num_classes=10, checkpoint=tsn_file)
    with pytest.raises(ValueError, match=r"wrong shape for 2 keys .*head\.fc\.weight \(10, 2048\) vs \(400, 2048\)"):
        ts.create_model("tsn_r50_1x1x8_k400", checkpoint=tsn_file)


def test_our_own_files_refuse_a_model_built_otherwise_and_tell_the_dataset(tmp_path):
    # a shift has no weights: only the file's record tells TSN from TSM, or a reversed order
    for name, over, message in (("tsn_r50_1x1x8_k400", {}, "shift_div=0 in the file, 8 in the model"),
                                ("tsm_r50_1x1x8_k400", {"shift_direction": "bidirectional_reversed"},
                                 "shift_direction='bidirectional_reversed' in the file, 'bidirectional'")):  # fmt: skip
        path = tmp_path / f"{name}.pt"
        model = ts.create_model(name, num_classes=10, **over)
        torch.save({"format": "temporalshift/1", "model_name": name, "overrides": {"num_classes": 10, **over},
                    "model": model.state_dict()}, path)  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(message)):
            ts.create_model("tsm_r50_1x1x8_k400", num_classes=10, checkpoint=path)
        assert ts.load_checkpoint(path).spec == model.spec  # alone, the file rebuilds its own model
        assert ts.create_model(name, num_classes=10, num_segments=16, checkpoint=path, **over).num_segments == 16
    tv = _tv_resnet()
    v1 = tmp_path / "TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth"  # the authors' V1 naming
    torch.save({"state_dict": _authors_resnet(tv, classes=174)}, v1)
    assert recognise(v1).model_name == "tsm_r50_1x1x8_sthv1"


def test_a_state_dict_saved_from_data_parallel_loads(tmp_path):
    model = _randomised(ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=5))
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    with pytest.warns(UserWarning, match="bare state dict"):
        loaded = ts.load_checkpoint(path)
    assert torch.equal(loaded.head.fc.weight, model.head.fc.weight)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_convert_writes_our_format_that_rebuilds_alone(tmp_path, capsys, suffix):
    tv = _tv_resnet()
    src = tmp_path / "TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth"
    torch.save({"state_dict": _authors_resnet(tv)}, src)
    dst = tmp_path / f"tsm{suffix}"
    assert main(["convert", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "recognised authors checkpoint -> tsm_r50_1x1x8_k400 (num_classes=10)" in out
    model = ts.load_checkpoint(dst)
    assert model.name == "tsm_r50_1x1x8_k400" and model.num_classes == 10
    _assert_backbone_equals(model, {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_pretrained_downloads_once_into_the_cache_and_checks_the_hash(tmp_path, file_server, monkeypatch):
    import dataclasses
    import hashlib

    from temporalshift.models import zoo

    root, base = file_server
    monkeypatch.setenv("TSM_HOME", str(tmp_path / "home"))
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400")
    torch.save({"state_dict": model.state_dict()}, root / "tmp.pth")
    digest = hashlib.sha256((root / "tmp.pth").read_bytes()).hexdigest()
    good = f"tsm_mobilenetv2_20230414-{digest[:8]}.pth"
    (root / "tmp.pth").rename(root / good)
    spec = zoo.ZOO["tsm_mobilenetv2_1x1x8_k400"]
    monkeypatch.setitem(zoo.ZOO, "tsm_mobilenetv2_1x1x8_k400",
                        dataclasses.replace(spec, weights=zoo.Weights(f"{base}/{good}", "mmaction2")))  # fmt: skip
    loaded = ts.create_model("tsm_mobilenetv2_1x1x8_k400", pretrained=True)
    assert (tmp_path / "home" / "checkpoints" / good).is_file()
    assert torch.equal(loaded.head.fc.weight, model.head.fc.weight)
    (root / good).unlink()  # a second call uses the cache, not the network
    ts.create_model("tsm_mobilenetv2_1x1x8_k400", pretrained=True)
    (root / "tampered-0123abcd.pth").write_bytes(b"x" * 100)
    with pytest.raises(OSError, match="sha256 does not start with 0123abcd"):
        ts.create_model("tsm_mobilenetv2_1x1x8_k400", pretrained=f"{base}/tampered-0123abcd.pth")
    assert not (tmp_path / "home" / "checkpoints" / "tampered-0123abcd.pth").exists()


def test_a_file_put_in_the_cache_by_hand_is_checked_like_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TSM_HOME", str(tmp_path))
    placed = tmp_path / "checkpoints" / "tsm_model-0123abcd.pth"
    placed.parent.mkdir()
    placed.write_bytes(b"not the published file")
    with pytest.raises(OSError, match="its sha256 does not start with 0123abcd"):
        hub.download("http://127.0.0.1:9/tsm_model-0123abcd.pth", progress=False)


def test_offline_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TSM_HOME", str(tmp_path))
    with pytest.raises(OSError, match=r"download it by hand and put it at .*checkpoints/resnet50-0676ba61\.pth"):
        hub.download("http://127.0.0.1:9/resnet50-0676ba61.pth", progress=False)
    assert main(["convert", "http://127.0.0.1:9/x-12345678.pth", str(tmp_path / "o.pt")]) == 1


def test_imagenet_initialisation_from_torchvision_weights(tmp_path):
    tv = _tv_resnet(18)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv.state_dict(), path)
    model = ts.create_model("tsm_r50_1x1x8_k400", backbone="resnet18", num_classes=5, pretrained=path)
    _assert_backbone_equals(model, {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    assert model.head.fc.weight.shape == (5, 512)


def test_damaged_files_get_one_line_saying_so(tmp_path, capsys):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    files = {
        "text.pt": b"hello, this is not a checkpoint\n",
        "empty.pt": b"",
        "random.pth": bytes(range(256)) * 8,
        "truncated.pt": good.read_bytes()[:200],
        "empty.safetensors": b"",
        "text.safetensors": b"hello, this is not a checkpoint\n",
        "text.pdparams": b"hello, this is not a checkpoint\n",
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=f"{name} is (empty|not a readable)") as info:
            ts.load_checkpoint(path)
        assert "refusing" not in str(info.value) and "\n" not in str(info.value)
        assert main(["convert", str(path), str(tmp_path / "out.pt")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("tsm convert: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out.pt").exists()


def test_a_safetensors_file_named_pt_still_loads(tmp_path):
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=5, input_size=32)
    src = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict()}, src)
    assert main(["convert", str(src), str(tmp_path / "odd.pt"), "--format", "safetensors"]) == 0
    assert (tmp_path / "odd.pt").read_bytes()[8:9] == b"{"  # safetensors content under a .pt name
    fresh = ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=5, input_size=32)
    loaded = ts.load_checkpoint(tmp_path / "odd.pt", model=fresh)
    assert torch.equal(loaded.head.fc.weight, model.head.fc.weight)


def test_convert_refuses_to_overwrite_its_source_and_leaves_no_temp_file(tmp_path, capsys):
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=5, input_size=32)
    src = tmp_path / "run.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, src)
    before = src.read_bytes()
    assert main(["convert", str(src), str(src)]) == 1
    assert "is the file being converted" in capsys.readouterr().err and src.read_bytes() == before
    (tmp_path / "taken").mkdir()
    assert main(["convert", str(src), str(tmp_path / "taken")]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt", "taken"]  # no .part left behind
    assert main(["convert", str(src), str(tmp_path / "new" / "dir" / "ours.safetensors")]) == 0
