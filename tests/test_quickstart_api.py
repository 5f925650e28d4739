"""The seed's Python API, offline: data -> model -> BC -> save/load -> closed-loop evaluation."""

import torch

from vla_engine import (BehavioralCloning, ILConfig, LeRobotVLADataset, VLAModel, create_lerobot_dataloader,
                        create_vla_model, evaluate_policy, generate_dataset, get_training_config)


def test_seed_quick_start_shapes(tmp_path):
    root = generate_dataset("reach", episodes=6, out=tmp_path / "reach", progress=False)
    dataset = LeRobotVLADataset("local/reach", root=root)
    dataloader = create_lerobot_dataloader(dataset, batch_size=16)

    # 1. model (the seed's create_vla_model call shape; "smolvlm" builds its small offline stand-in)
    model = create_vla_model(vlm="smolvlm", action_head="mlp", action_dim=dataset.action_dim,
                             state_dim=dataset.state_dim)
    # 3. BC with the seed's ILConfig and call shape
    config = ILConfig(learning_rate=3e-4, num_epochs=100, max_steps=40, warmup_steps=5, log_every=5)
    result = BehavioralCloning(model, config).train(dataloader)
    assert result.step == 40 and result.final_loss < result.first_loss

    # 4. save and load back: identical actions
    model.save_pretrained(tmp_path / "my_vla_model")
    again = VLAModel.from_pretrained(tmp_path / "my_vla_model")
    batch = next(iter(create_lerobot_dataloader(dataset, batch_size=4, shuffle=False)))
    obs = {k: v for k, v in batch.items() if k not in ("action", "action_is_pad")}
    model.eval()
    torch.testing.assert_close(model.predict_action_chunk(obs), again.predict_action_chunk(obs))

    ev = evaluate_policy(again, "reach", episodes=2, num_videos=1, video_dir=tmp_path / "videos", progress=False)
    assert ev.summary["eval/episodes"] == 2 and 0 <= ev.success_rate <= 1
    assert len(ev.videos) == 1 and all(e["seed"] >= 1_000_000 for e in ev.episodes)


def test_recipe_one_form_and_training_config(tmp_path):
    root = generate_dataset("push", episodes=4, out=tmp_path / "push", progress=False)
    dataset = LeRobotVLADataset("local/push", root=root)
    model = create_vla_model(vlm="tiny", action_head="mlp", action_dim=2)
    trainer = BehavioralCloning(model, dataset)  # the Recipe 1 form: dataset as the second argument
    before = model.num_parameters()
    result = trainer.train(num_epochs=2)
    assert result.state == "done" and result.step >= 1 and model.num_parameters() == before
    assert model.has_normalization()  # statistics came from the dataset
    cfg = get_training_config("il-bc")
    assert isinstance(cfg, ILConfig) and cfg.algorithm == "bc"


def test_mismatched_action_dim_is_a_clear_error(tmp_path):
    import pytest

    from vla_engine.train.loop import TrainingError

    root = generate_dataset("reach", episodes=2, out=tmp_path / "reach", progress=False)
    dataset = LeRobotVLADataset("local/reach", root=root)
    model = create_vla_model(vlm="tiny", action_head="mlp", action_dim=4, state_dim=2)
    with pytest.raises(TrainingError, match=r"action_dim is 2 but the model's model.action_dim is 4; set model.action_dim: 2"):
        BehavioralCloning(model, dataset).train(max_steps=1)
    chunky = create_vla_model(vlm="tiny", action_head="mlp", action_dim=2, state_dim=2, chunk_size=4,
                              n_action_steps=2)
    with pytest.raises(TrainingError, match=r"chunks of 1 steps but model.chunk_size is 4"):
        BehavioralCloning(chunky, dataset).train(max_steps=1)


def test_bc_fine_tunes_from_a_checkpoint_with_init_from(tmp_path):
    """training.init_from: a BC run starts from a checkpoint's weights (its own data's normalisation), and a run
    whose model differs from the checkpoint's is refused in one line naming the field."""
    import pytest

    from vla_engine.train.loop import TrainingError

    root = generate_dataset("reach", episodes=4, out=tmp_path / "reach", progress=False)
    dataset = LeRobotVLADataset("local/reach", root=root)
    loader = create_lerobot_dataloader(dataset, batch_size=8)
    base = create_vla_model(vlm="tiny", action_head="mlp", action_dim=2, state_dim=2)
    BehavioralCloning(base, ILConfig(max_steps=30, learning_rate=1e-3, warmup_steps=2)).train(loader)
    base.set_normalization({"action": {"mean": [5.0, 5.0], "std": [2.0, 2.0], "min": [0, 0], "max": [9, 9]},
                            "observation.state": {"mean": [0, 0], "std": [1, 1], "min": [-1, -1], "max": [1, 1]}})
    base.save_pretrained(tmp_path / "base")

    fresh = create_vla_model(vlm="tiny", action_head="mlp", action_dim=2, state_dim=2)
    scratch = create_vla_model(vlm="tiny", action_head="mlp", action_dim=2, state_dim=2)
    scratch.load_state_dict(fresh.state_dict())
    cfg = ILConfig(max_steps=1, learning_rate=1e-9, warmup_steps=0, init_from=str(tmp_path / "base"))
    res = BehavioralCloning(fresh, cfg).train(loader)
    res0 = BehavioralCloning(scratch, cfg.replace(init_from=None)).train(loader)
    assert res.first_loss < res0.first_loss  # the trained weights fit the data better than a fresh start
    for (k, v), w in zip(base.state_dict().items(), fresh.state_dict().values()):
        if "_normalizer." not in k:
            torch.testing.assert_close(v, w, atol=1e-6, rtol=1e-5)  # lr 1e-9: the weights are the checkpoint's
    # the normalisation is the fine-tuning data's, not the checkpoint's
    torch.testing.assert_close(fresh.action_normalizer.mean.float(),
                               torch.as_tensor(dataset.stats["action"]["mean"]).float())

    other = create_vla_model(vlm="tiny", action_head="mlp", action_dim=2, state_dim=2, vision_dim=24)
    with pytest.raises(TrainingError) as e:
        BehavioralCloning(other, cfg).train(loader)
    msg = str(e.value)
    assert "\n" not in msg and "training.init_from" in msg and "model.vision.dim" in msg
