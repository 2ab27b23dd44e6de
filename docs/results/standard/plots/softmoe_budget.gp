# Written by probmoe. Re-plot with `gnuplot softmoe_budget.gp` in this directory.
set encoding utf8
do for [format in 'png svg'] {
if (format eq 'png') {
    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
        set terminal pngcairo size 1000,650 noenhanced font 'sans,12'
    } else {
        set terminal png truecolor size 1000,650 noenhanced
    }
} else {
    set terminal svg size 1000,650 dynamic noenhanced font 'sans,12' background rgb 'white'
}
set output 'softmoe_budget.'.format
set grid back lc rgb '#dddddd'
set title 'SoftMoE''s learned k_l per layer during fine-tuning (seed 1)'
set ylabel 'k_l'
set xlabel 'training step'
set key outside right top vertical Left reverse box samplen 2
set autoscale xfix
set offsets 0, 0, graph 0.05, graph 0.05
plot \
  'softmoe_budget.dat' using 1:2 with lines lw 2 lc rgb '#000072B2' title 'layer 0', \
  'softmoe_budget.dat' using 1:3 with lines lw 2 lc rgb '#00D55E00' title 'layer 1', \
  'softmoe_budget.dat' using 1:4 with lines lw 2 lc rgb '#00009E73' title 'layer 2', \
  'softmoe_budget.dat' using 1:5 with lines lw 2 lc rgb '#00CC79A7' title 'layer 3'
unset output
}
