# Runs the reference's gp.py (the CPU copy in $REFERENCE, default .ref-cpu) with its model initialised
# from torch.manual_seed(INIT_SEED). The script itself builds its model before it seeds torch, so every
# run of it, whatever --train_seed, starts from the same weights (PyTorch's default seed): its seeds
# vary the data and the walk's draws, not the initialisation.
# Usage, from anywhere: INIT_SEED=3 /usr/bin/python3 ref_gp_train.py --decoder_type tca --num_steps 5000 \
#   --train_seed 3 --expid tca3 --eval_num_batches 50 --eval_freq 100000
import os, sys, runpy, torch
REF = os.environ.get('REFERENCE', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '.ref-cpu'))
os.chdir(REF)
sys.path.insert(0, os.getcwd())
torch.manual_seed(int(os.environ['INIT_SEED']))
sys.argv = ['gp.py'] + sys.argv[1:]
runpy.run_path('gp.py', run_name='__main__')
