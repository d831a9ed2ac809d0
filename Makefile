# Every target sets itself up: it creates .venv when missing and installs torch first
# (TORCH_SPEC, a CPU build by default; e.g. TORCH_SPEC="torch" for a CUDA build), then the package.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.scalex-installed
BENCH_STAMP := $(VENV)/.scalex-bench-installed
OUTDIR ?= demo_output

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $(BENCH_STAMP)

demo: $(STAMP)  ## the main job on the shipped data
	$(BIN)/scalex-scvi demo --outdir $(OUTDIR)

test: $(STAMP)  ## the fast test suite (what CI runs)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)  ## full-training and large-data tests
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tutorials
	$(BIN)/ruff format --check src tests benchmarks tutorials

BENCHMARKS ?= speed step_profile original_checkpoint query_model decoder_bias_init scaling early_stopping throughput backed_map atlas_growth projection projection_types projection_seeds label_threshold label_calibration label_rules label_neighbors projection_budgets projection_encoder_norm encoder_statistics query_scaling novel_types panel atac partial_overlap kl_weight decoder_scale kl_centring kl_warmup kl_cooldown kl_within lr_schedule
# further SCALEX rows appended to the panel (see benchmarks/results/panel.md)
PANEL_EXTRA = "--datasets pbmc_ifnb --add-budgets 6000" \
	"--add-budgets 1000 2000 4000 8000 --batch-norm running per_batch --lr 1e-3" \
	"--datasets pbmc_3chem --add-budgets 4000 8000 --batch-norm running per_batch --lr 1e-3 --seed 1" \
	"--datasets pbmc_3chem --add-budgets 4000 8000 --batch-norm running per_batch --lr 1e-3 --seed 2" \
	"--add-budgets defaults --batch-norm running per_batch --seed 1" \
	"--add-peers scVI original --seed 1" \
	"--add-budgets defaults --batch-norm running per_batch --seed 2" \
	"--add-peers scVI original --seed 2" \
	"--add-budgets defaults 8000 --kl-weight 0.02" \
	"--add-budgets defaults --batch-norm running per_batch --seed 3" \
	"--add-peers scVI original --seed 3" \
	"--add-budgets defaults --batch-norm running per_batch --seed 4" \
	"--add-peers scVI original --seed 4" \
	"--datasets pbmc_ifnb lung_celllines --add-budgets 1000 2000 4000 --batch-norm running per_batch --lr 1e-3 --seed 1" \
	"--datasets pbmc_ifnb lung_celllines --add-budgets 1000 2000 4000 --batch-norm running per_batch --lr 1e-3 --seed 2" \
	"--datasets pbmc_3chem --add-budgets 1000 2000 --batch-norm running per_batch --lr 1e-3 --seed 1" \
	"--datasets pbmc_3chem --add-budgets 1000 2000 --batch-norm running per_batch --lr 1e-3 --seed 2" \
	"--add-budgets 8000 --kl-weight 0.02 --seed 1" \
	"--add-budgets 1000 2000 4000 --batch-norm running per_batch --lr 1e-3 --seed 3" \
	"--add-budgets 1000 2000 4000 --batch-norm running per_batch --lr 1e-3 --seed 4"
# further SCALEX rows appended to the scATAC-seq panel (see atac.md)
ATAC_EXTRA = "--add-budgets defaults" "--add-budgets 8000 --peaks normalised" \
	"--add-budgets defaults --peaks normalised" "--add-budgets defaults --seed 1" \
	"--add-budgets defaults --peaks normalised --seed 1"
# further SCALEX rows appended to the partial-overlap series (see partial_overlap.md)
PARTIAL_EXTRA = "--iterations 2000" "--iterations 8000" "--iterations 2000 --kl-weight 0.02" \
	"--iterations 8000 --kl-weight 0.02"

# gpu.py is left out: it needs a CUDA device (see benchmarks/results/gpu.md)
bench: $(BENCH_STAMP)  ## every benchmark on ../shared/data (SCALEX_SCVI_DATA_DIR); results in benchmarks/results
	cd benchmarks && for script in $(BENCHMARKS); do ../$(BIN)/python $$script.py || exit 1; done
	cd benchmarks && for extra in $(PANEL_EXTRA); do ../$(BIN)/python panel.py $$extra || exit 1; done
	cd benchmarks && for extra in $(ATAC_EXTRA); do ../$(BIN)/python atac.py $$extra || exit 1; done
	cd benchmarks && for extra in $(PARTIAL_EXTRA); do ../$(BIN)/python partial_overlap.py \
		--methods SCALEX --reuse results/partial_overlap.csv $$extra || exit 1; done
	cd benchmarks && ../$(BIN)/python partial_overlap.py --seed 1 --iterations 8000 \
		--kl-weight 0.02 --output partial_overlap_seed1
	cd benchmarks && ../$(BIN)/python projection_seeds.py --kl-weight 0.02
	cd benchmarks && ../$(BIN)/python projection_seeds.py --splits adt_holdout_studies
	cd benchmarks && ../$(BIN)/python decoder_bias_init.py --budgets 8000 0 --seed 1
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods original --series \
		lung_celllines --reuse results/partial_overlap.csv --output partial_overlap_original
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods original --series \
		pbmc_3chem --reuse results/partial_overlap.csv --output partial_overlap_original_pbmc
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods SCALEX original --series \
		lung_celllines --seed 1 --draws 1 --reuse results/partial_overlap_seed1.csv \
		--output partial_overlap_original_seed1
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods SCALEX original --series \
		pbmc_3chem --seed 1 --draws 1 --reuse results/partial_overlap_seed1.csv \
		--output partial_overlap_original_seed1_pbmc
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods SCALEX --batch-norm running \
		per_batch --reuse results/partial_overlap.csv --output partial_overlap_per_batch
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods SCALEX --iterations 4000 \
		--lr 1e-3 --batch-norm running per_batch --reuse results/partial_overlap_per_batch.csv \
		--output partial_overlap_per_batch_lr
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods SCALEX --seed 1 --batch-norm \
		running per_batch --reuse results/partial_overlap_seed1.csv \
		--output partial_overlap_seed1_per_batch
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods SCALEX --iterations 8000 \
		--kl-within 0.04 --reuse results/partial_overlap_per_batch_lr.csv \
		--output partial_overlap_kl_within
	cd benchmarks && ../$(BIN)/python partial_overlap.py --methods SCALEX --iterations 8000 \
		--kl-within 0.04 --seed 1 --reuse results/partial_overlap_seed1_per_batch.csv \
		--output partial_overlap_seed1_kl_within
	cd benchmarks && ../$(BIN)/python over_correction_floor.py
	cd benchmarks && ../$(BIN)/python label_metric.py --seeds 0 1 2
	cd benchmarks && ../$(BIN)/python label_atlas.py --seeds 1 2 0
	cd benchmarks && ../$(BIN)/python label_metric.py --splits pbmc_3pv1 pbmc_3pv2 pbmc_5p \
		--seeds 3 4 --previous results/label_metric.csv --stem label_metric_pbmc_seeds
	cd benchmarks && ../$(BIN)/python label_atlas.py --splits pbmc_3pv1 pbmc_3pv2 pbmc_5p \
		--seeds 3 4 --peers results/label_metric_pbmc_seeds.csv --previous results/label_atlas.csv \
		--stem label_atlas_pbmc_seeds
	cd benchmarks && ../$(BIN)/python balanced_speed.py
	cd benchmarks && ../$(BIN)/python balanced_speed.py --split pbmc_3pv1 pbmc_3pv2 pbmc_5p \
		ifnb_stim_onto_ctrl lung_3line_onto_5line lung_5line_onto_3line \
		--name balanced_speed_splits
	cd benchmarks && ../$(BIN)/python kl_centring.py --seed 1 --centrings 1 0 --datasets \
		lung_celllines_k0_d0 lung_celllines_k0_d1 pbmc_3chem_k0_d0 pbmc_3chem_k0_d1 \
		--stem kl_centring_seed1
	cd benchmarks && ../$(BIN)/python kl_cooldown.py --seed 1 --drops 8000 4000 --datasets \
		lung_celllines_k0_d0 lung_celllines_k0_d1 lung_celllines --stem kl_cooldown_seed1
	cd benchmarks && ../$(BIN)/python kl_within.py --seed 1 --withins 1 0.04 --weak --datasets \
		pbmc_3chem lung_celllines pbmc_ifnb --stem kl_within_seed1
	cd benchmarks && ../$(BIN)/python summary.py

clean:
	rm -rf $(OUTDIR) .pytest_cache .ruff_cache
