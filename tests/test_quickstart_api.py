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
